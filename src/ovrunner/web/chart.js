// A two-line time chart on a canvas: tokens/s on the left axis, time to first token on the
// right. Small enough not to need a charting library; colours come from the page's CSS.

const PAD = { left: 48, right: 56, top: 12, bottom: 24 };

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  return Math.ceil(value / step) * step;
}

export function drawChart(canvas, samples, from, to) {
  // Draw at the device's pixel density, at the size CSS gives the canvas.
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);

  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const x = (at) => PAD.left + ((at - from) / (to - from)) * plotW;
  const tpsMax = niceMax(Math.max(0, ...samples.map((s) => s.tokensPerSecond)));
  const ttftMax = niceMax(Math.max(0, ...samples.map((s) => s.ttftSeconds ?? 0)));

  g.font = "11px system-ui, sans-serif";
  g.strokeStyle = css("--grid");
  g.fillStyle = css("--muted");
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = PAD.top + (plotH * i) / 4;
    g.beginPath();
    g.moveTo(PAD.left, y);
    g.lineTo(PAD.left + plotW, y);
    g.stroke();
    g.textAlign = "right";
    g.fillText(((tpsMax * (4 - i)) / 4).toFixed(tpsMax < 10 ? 2 : 0), PAD.left - 6, y + 4);
    g.textAlign = "left";
    g.fillText(`${((ttftMax * (4 - i)) / 4).toFixed(2)} s`, PAD.left + plotW + 6, y + 4);
  }
  g.textAlign = "center";
  for (let minutes = 5; minutes >= 0; minutes--) {
    g.fillText(minutes ? `-${minutes} min` : "now", x(to - minutes * 60000), height - 6);
  }

  const line = (color, value, max) => {
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    let drawing = false;
    for (const sample of samples) {
      const v = value(sample);
      if (v === null) {
        drawing = false;
        continue;
      }
      const y = PAD.top + plotH - (v / max) * plotH;
      if (drawing) g.lineTo(x(sample.at), y);
      else g.moveTo(x(sample.at), y);
      drawing = true;
    }
    g.stroke();
  };
  line(css("--tokens"), (s) => s.tokensPerSecond, tpsMax);
  line(css("--ttft"), (s) => s.ttftSeconds, ttftMax);
  // A dot at each reading too: a lone reading between idle intervals is no line.
  const dots = (color, value, max) => {
    g.fillStyle = color;
    for (const sample of samples) {
      const v = value(sample);
      if (v === null) continue;
      g.beginPath();
      g.arc(x(sample.at), PAD.top + plotH - (v / max) * plotH, 2.5, 0, 2 * Math.PI);
      g.fill();
    }
  };
  dots(css("--tokens"), (s) => (s.tokensPerSecond > 0 ? s.tokensPerSecond : null), tpsMax);
  dots(css("--ttft"), (s) => s.ttftSeconds, ttftMax);

  g.textAlign = "left";
  g.fillStyle = css("--tokens");
  g.fillText("tokens/s", PAD.left + 4, PAD.top + 10);
  g.fillStyle = css("--ttft");
  g.fillText("time to first token", PAD.left + 64, PAD.top + 10);
}

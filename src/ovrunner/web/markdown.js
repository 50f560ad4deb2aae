// Model output rendered as Markdown, safely: it is untrusted text. Two layers, so that either
// alone would do: raw HTML in the Markdown is shown as text (marked's `html` renderer escapes
// it instead of passing it through), and the result goes through DOMPurify before it reaches
// the DOM. The page's Content-Security-Policy (no inline script) is the third.

/* global marked, DOMPurify */

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const markdown = new marked.Marked({
  gfm: true,
  breaks: true,
  renderer: {
    html({ text }) {
      return escapeHtml(text);
    },
  },
});

// Links the model writes open elsewhere and carry nothing of this page.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

const PURIFY = {
  // Images could only beacon out (the CSP refuses other hosts anyway); forms and styles could
  // dress model text up as this page's own controls.
  FORBID_TAGS: ["img", "style", "form", "input", "button", "textarea", "select"],
  ALLOW_DATA_ATTR: false,
};

export function renderMarkdown(element, text) {
  element.innerHTML = DOMPurify.sanitize(markdown.parse(text), PURIFY);
}

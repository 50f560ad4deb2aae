// The small DOM helpers every view uses.

export const $ = (id) => document.getElementById(id);

// Fill a <select> with these values (each option's value and label), keeping the choice made
// if it is still offered.
export function fillSelect(select, values) {
  const previous = select.value;
  select.replaceChildren(
    ...values.map((value) => {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = value;
      return option;
    }),
  );
  if (values.includes(previous)) select.value = previous;
}

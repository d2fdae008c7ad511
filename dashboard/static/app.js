// The little JavaScript the dashboard needs beyond htmx: select a group of dead letters at once,
// and remember who you are for the replay log.
document.addEventListener("change", (event) => {
  const box = event.target;
  if (box.classList && box.classList.contains("select-group")) {
    box.closest(".group").querySelectorAll('input[name="chosen"]').forEach((each) => {
      each.checked = box.checked;
    });
  }
});
document.addEventListener("DOMContentLoaded", () => {
  const operator = document.getElementById("operator");
  if (!operator) return;
  operator.value = localStorage.getItem("saga-operator") || "";
  operator.form.addEventListener("submit", () => localStorage.setItem("saga-operator", operator.value));
});

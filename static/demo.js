// The demo page's "Things to try" buttons: each sends its phrase to the assistant.
document.querySelectorAll("button.try").forEach(function (button) {
  button.addEventListener("click", function () {
    if (!window.Signoff) return;
    window.Signoff.open();
    window.Signoff.send(button.dataset.phrase);
  });
});

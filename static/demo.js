// The shop's own "Cancel order 1001" button: it asks signoff for the action (the site
// lets its pages call cancel_order), and the same card as the assistant's decides it.
document.getElementById("cancel-1001").addEventListener("click", function () {
  if (!window.Signoff) return;
  var status = document.getElementById("order-status");
  window.Signoff.call("cancel_order", { order_id: 1001, customer: "Ada Lovelace", total: 89.5 }).then(
    function (card) {
      status.textContent = card.status === "done" ? "cancelled" : "open (" + card.status + ")";
    },
    function (error) {
      status.textContent = "open (" + error.message + ")";
    }
  );
});

// The demo page's "Things to try" buttons: each sends its phrase to the assistant.
document.querySelectorAll("button.try").forEach(function (button) {
  button.addEventListener("click", function () {
    if (!window.Signoff) return;
    window.Signoff.open();
    window.Signoff.send(button.dataset.phrase);
  });
});

// Disable a form's buttons once it is submitted, so a double click sends it once.
// (The server also answers a repeated page with a redirect and stores it once.)
document.addEventListener("submit", function (event) {
  var form = event.target;
  setTimeout(function () {
    form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
  }, 0);
});

(function () {
  "use strict";

  // Gallery filters: one class and one flag code at a time; a card shows when it matches both.
  var cards = Array.prototype.slice.call(document.querySelectorAll("#gallery-cards .card"));
  var counter = document.getElementById("gallery-count");
  var state = { cls: "all", flag: "all" };

  function matches(card) {
    var classOk = state.cls === "all" || card.getAttribute("data-class") === state.cls;
    var codes = (card.getAttribute("data-flags") || "").split(" ");
    var flagOk = state.flag === "all" || codes.indexOf(state.flag) >= 0;
    return classOk && flagOk;
  }

  function apply() {
    var shown = 0;
    cards.forEach(function (card) {
      card.hidden = !matches(card);
      if (!card.hidden) { shown += 1; }
    });
    if (counter) { counter.textContent = shown + " of " + cards.length + " shown"; }
  }

  document.querySelectorAll("button[data-filter]").forEach(function (button) {
    button.addEventListener("click", function () {
      var group = button.getAttribute("data-filter");
      state[group] = button.getAttribute("data-value");
      document.querySelectorAll('button[data-filter="' + group + '"]').forEach(function (b) {
        b.setAttribute("aria-pressed", b === button ? "true" : "false");
      });
      apply();
    });
  });
  apply();

  // Click (or Enter) on an image of a card: both of its images, larger, in a dialog.
  var dialog = document.getElementById("zoom");
  if (!dialog || typeof dialog.showModal !== "function") { return; }
  var holder = dialog.querySelector(".zoom-pair");
  var caption = dialog.querySelector(".zoom-caption");

  function open(img) {
    var group = img.closest("[data-zoom-group]") || img.parentNode;
    while (holder.firstChild) { holder.removeChild(holder.firstChild); }
    group.querySelectorAll("img").forEach(function (source) {
      var copy = document.createElement("img");
      copy.src = source.src;
      copy.alt = source.alt;
      holder.appendChild(copy);
    });
    caption.textContent = group.getAttribute("data-caption") || img.alt;
    dialog.showModal();
  }

  document.querySelectorAll("img.zoomable").forEach(function (img) {
    img.addEventListener("click", function () { open(img); });
    img.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(img); }
    });
  });
  dialog.addEventListener("click", function (event) {
    if (event.target === dialog) { dialog.close(); }
  });
})();

(function () {
  "use strict";

  // Class table: sort by a column (click its title), filter by name and by finding. Rows are
  // re-appended in one fragment and keys read once, so 1 000 classes sort in milliseconds.
  var table = document.getElementById("class-table");
  if (table) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var search = document.getElementById("class-search");
    var show = document.getElementById("class-kind");
    var classCount = document.getElementById("class-count");

    var key = function (row, column, how) {
      if (how === "rank") { return Number(row.getAttribute("data-rank") || 0); }
      var text = row.cells[column].textContent.trim();
      if (how === "text") { return text.toLowerCase(); }
      var value = parseFloat(text.replace(/[,%]/g, ""));
      return isNaN(value) ? null : value;
    };

    table.querySelectorAll("button[data-sort]").forEach(function (button) {
      button.addEventListener("click", function () {
        var th = button.parentNode;
        var column = th.cellIndex;
        var how = button.getAttribute("data-sort");
        var descending = th.getAttribute("aria-sort") === "ascending";
        table.querySelectorAll("thead th").forEach(function (other) {
          other.setAttribute("aria-sort", "none");
        });
        th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        var keyed = rows.map(function (row, i) { return [key(row, column, how), i, row]; });
        keyed.sort(function (a, b) {
          if (a[0] === b[0]) { return a[1] - b[1]; }
          if (a[0] === null) { return 1; }   // missing values last, either way
          if (b[0] === null) { return -1; }
          var order = a[0] < b[0] ? -1 : 1;
          return descending ? -order : order;
        });
        var fragment = document.createDocumentFragment();
        keyed.forEach(function (item) { fragment.appendChild(item[2]); });
        body.appendChild(fragment);
      });
    });

    var filter = function () {
      var text = (search.value || "").trim().toLowerCase();
      var wanted = show.value;
      var shown = 0;
      rows.forEach(function (row) {
        var kinds = row.getAttribute("data-kinds");
        var ok = !text || row.cells[0].textContent.toLowerCase().indexOf(text) >= 0;
        if (ok && wanted === "flagged") { ok = kinds !== null; }
        else if (ok && wanted === "clean") { ok = kinds === null; }
        else if (ok && wanted === "new") { ok = row.hasAttribute("data-new"); }
        else if (ok && wanted !== "all") { ok = kinds !== null && kinds.split(" ").indexOf(wanted) >= 0; }
        row.hidden = !ok;
        if (ok) { shown += 1; }
      });
      classCount.textContent = shown + " of " + rows.length + " classes shown";
    };
    search.addEventListener("input", filter);
    show.addEventListener("change", filter);

    // "Show these classes" links of the findings set the table's filter to their kind.
    document.querySelectorAll("a[data-show-kind]").forEach(function (link) {
      link.addEventListener("click", function () {
        var kind = link.getAttribute("data-show-kind");
        if (show.querySelector('option[value="' + kind + '"]')) { show.value = kind; }
        search.value = "";
        filter();
      });
    });

    // A link to a class row that the filter hides clears the filter first.
    var reveal = function () {
      var id = decodeURIComponent(window.location.hash.slice(1));
      var row = id ? document.getElementById(id) : null;
      if (row && row.parentNode === body && row.hidden) {
        search.value = "";
        show.value = "all";
        filter();
        row.scrollIntoView();
      }
    };
    window.addEventListener("hashchange", reveal);
    reveal();
  }

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

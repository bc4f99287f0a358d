// moeplan: progressive enhancement only. Every page works without this file.
(function () {
  "use strict";

  // Charts: a <canvas data-chart="ID"> with its Chart.js config in <script type="application/json" id="ID">.
  function drawCharts() {
    if (typeof window.Chart === "undefined") return;
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.getAttribute("data-chart"));
      if (!source) return;
      try {
        new window.Chart(canvas, JSON.parse(source.textContent));
      } catch (e) {
        console.warn("chart", canvas.id, e);
      }
    });
  }

  // A table.sortable's headers become buttons (Tab reaches them; Enter, Space or a click sorts by that
  // column, by data-sort values where present), and aria-sort tells assistive technology the order.
  function cellValue(row, i) {
    var cell = row.children[i];
    if (!cell) return "";
    var v = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    var n = parseFloat(v);
    return isNaN(n) || !/^-?[\d.]+(e[+-]?\d+)?$/i.test(v) ? v.toLowerCase() : n;
  }
  function sortable(table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, i) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      while (th.firstChild) button.appendChild(th.firstChild);
      th.appendChild(button);
      th.setAttribute("aria-sort", "none");
      button.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        heads.forEach(function (h) { h.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, i), y = cellValue(b, i);
          if (x === y) return 0;
          return (x < y ? -1 : 1) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  // <input data-filter-table="TABLE_ID">: hide rows that do not contain the typed text.
  function filterBox(input) {
    var table = document.getElementById(input.getAttribute("data-filter-table"));
    if (!table) return;
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.hidden = q !== "" && r.textContent.toLowerCase().indexOf(q) < 0;
      });
    });
  }

  // A preset <select data-fill="INPUT_ID"> writes its value into the rig box; typing in the box
  // afterwards clears the pick (the server applies a chosen preset over the box).
  function presetFill(select) {
    var target = document.getElementById(select.getAttribute("data-fill"));
    if (!target) return;
    select.addEventListener("change", function () {
      if (select.value) target.value = select.value;
    });
    target.addEventListener("input", function () { select.value = ""; });
  }

  // Copy buttons next to commands (shown only when the clipboard is available).
  function copyButton(button) {
    if (!navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(button.getAttribute("data-copy")).then(
        function () { button.textContent = "copied"; },
        function () { button.textContent = "select and copy"; }
      );
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts();
    document.querySelectorAll("table.sortable").forEach(sortable);
    document.querySelectorAll("input[data-filter-table]").forEach(filterBox);
    document.querySelectorAll("select[data-fill]").forEach(presetFill);
    document.querySelectorAll("button[data-copy]").forEach(copyButton);
  });
})();

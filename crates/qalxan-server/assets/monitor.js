// The alert monitor follows alerts live through server-sent events (/alerts/stream): changed
// rows are replaced in place, new ones inserted in id order, rows that leave the filter
// removed, and the counters follow. The server renders the rows, so the page and the stream
// draw them alike. Without scripts the page reloads itself instead (<noscript> refresh).
(function () {
  "use strict";
  var table = document.getElementById("alerts");
  if (!table || !table.dataset.stream || !window.EventSource) return;
  var body = table.tBodies[0];
  var form = table.closest("form");
  var empty = document.getElementById("no-alerts");
  var state = document.getElementById("live-state");
  var limit = parseInt(table.dataset.rows, 10) || 200;
  var source = new EventSource(table.dataset.stream);

  function say(text, live) {
    if (!state) return;
    state.textContent = text;
    state.dataset.live = live;
  }
  function shown() {
    var any = body.rows.length > 0;
    if (empty) empty.hidden = any;
    if (form) form.hidden = !any;
  }
  function rowOf(id) {
    return body.querySelector('tr[data-alert="' + id + '"]');
  }

  source.onopen = function () { say("live", "on"); };
  source.onerror = function () {
    say(source.readyState === EventSource.CLOSED ? "disconnected, reload the page" : "reconnecting…", "off");
  };
  source.addEventListener("row", function (e) {
    var holder = document.createElement("tbody");
    holder.innerHTML = e.data;
    var row = holder.firstElementChild;
    if (!row) return;
    var id = parseInt(row.dataset.alert, 10);
    var old = rowOf(id);
    if (old) {
      var was = old.querySelector("input[type=checkbox]");
      var box = row.querySelector("input[type=checkbox]");
      if (was && box) box.checked = was.checked;
      old.replaceWith(row);
    } else {
      var after = null;
      for (var i = 0; i < body.rows.length; i++) {
        if (parseInt(body.rows[i].dataset.alert, 10) < id) { after = body.rows[i]; break; }
      }
      if (!after && body.rows.length >= limit) return; // older than the whole page
      body.insertBefore(row, after);
      while (body.rows.length > limit) body.deleteRow(-1);
    }
    row.classList.add("fresh");
    shown();
  });
  source.addEventListener("gone", function (e) {
    var row = rowOf(parseInt(e.data, 10));
    if (row) row.remove();
    shown();
  });
  source.addEventListener("counts", function (e) {
    var counts = JSON.parse(e.data);
    document.querySelectorAll("strong[data-count]").forEach(function (el) {
      el.textContent = counts[el.dataset.count] || "0";
    });
  });
  source.addEventListener("lagged", function () {
    say("more changed than the page can follow, reload it", "lagged");
  });
})();

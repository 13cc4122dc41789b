// sluice: follows a running attempt's log over server-sent events and appends each chunk as
// text (never as HTML). When the attempt ends, the page reloads to show its final state.
(function () {
  "use strict";
  var log = document.querySelector("pre[data-stream]");
  if (!log || !window.EventSource) return;
  var source = new EventSource(log.getAttribute("data-stream"));
  source.addEventListener("chunk", function (event) {
    var atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 8;
    log.appendChild(document.createTextNode(JSON.parse(event.data)));
    log.hidden = false;
    var empty = document.getElementById("log-empty");
    if (empty) empty.remove();
    if (atBottom) window.scrollTo(0, document.body.scrollHeight);
  });
  source.addEventListener("end", function () {
    source.close();
    window.location.reload();
  });
})();

/**
 * The dashboard's stylesheet and script, served as files (`/assets/ui.css`, `/assets/ui.js`):
 * the CSP allows no inline code. They are strings here so the one-file bundle carries
 * them: nothing is fetched from elsewhere, and the dashboard works offline.
 */
export const UI_CSS = `
:root { color-scheme: light dark; --bad: #b3261e; --warn: #8a5a00; --ok: #1b6e20; --muted: #777; --line: #8884; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; }
header { padding: .5rem 1rem; border-bottom: 1px solid var(--line); }
header a { font-weight: 600; }
main { padding: 0 1rem 2rem; max-width: 80rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
code, pre, .path { font-family: ui-monospace, monospace; }
pre { overflow-x: auto; margin: 0; padding: .5rem; border: 1px solid var(--line); }
.muted { color: var(--muted); }
.ok { color: var(--ok); } .bad { color: var(--bad); } .warn { color: var(--warn); }
.assurance-high { color: var(--ok); } .assurance-reduced { color: var(--warn); } .assurance-breakglass { color: var(--bad); }
.timeline li { margin: .3rem 0; } .timeline time, li time { color: var(--muted); font-size: 90%; }
.file { margin: 1rem 0; } .file h3 { font-size: 100%; font-weight: normal; margin: .25rem 0; }
.flag { padding: 0 .4rem; border-radius: .2rem; }
.flag-unsafe .flag, .flag-refused .flag, .flag-conflict .flag { background: var(--bad); color: #fff; }
.flag-review .flag { background: var(--warn); color: #fff; }
.flag-unsafe, .flag-refused, .flag-conflict { border-left: 4px solid var(--bad); padding-left: .5rem; }
.flag-review { border-left: 4px solid var(--warn); padding-left: .5rem; }
.patch span { display: block; min-height: 1.2em; }
.patch .add { background: #2e7d3233; } .patch .del { background: #c6282833; }
.patch .hunk { color: #1565c0; } .patch .head { font-weight: 600; }
table.sbs { table-layout: fixed; font-family: ui-monospace, monospace; border: 1px solid var(--line); }
table.sbs th { font-weight: 600; } table.sbs caption { text-align: left; color: var(--muted); }
table.sbs td { border: 0; padding: 0 .4rem; white-space: pre-wrap; overflow-wrap: anywhere; }
table.sbs col.no { width: 3.5em; } table.sbs td.no { text-align: right; color: var(--muted); user-select: none; }
table.sbs td.del { background: #c6282833; } table.sbs td.add { background: #2e7d3233; }
table.sbs td.del::before { content: '− '; } table.sbs td.add::before { content: '+ '; }
table.sbs td.empty { background: #8881; }
table.sbs tr.changed td.no { font-weight: 600; }
table.sbs tr.hunk td { color: #1565c0; border-top: 1px solid var(--line); }
table.sbs tr.note td, table.sbs tr.binary td { color: var(--muted); font-style: italic; }
tr.deny td:nth-child(2) { color: var(--bad); font-weight: 600; }
table.hide-allow tr.allow, table.hide-deny tr.deny { display: none; }
form.inline { display: inline; }
button.danger { font-weight: 600; }
`;

export const UI_JS = `'use strict';
// Egress page: the allowed/denied filters, and live rows from the server-sent events
// (built with textContent: a host name from a cell is text, never markup).
(function () {
  var table = document.getElementById('egress');
  if (!table) return;
  [['show-allow', 'hide-allow'], ['show-deny', 'hide-deny']].forEach(function (pair) {
    var box = document.getElementById(pair[0]);
    var apply = function () { table.classList.toggle(pair[1], !box.checked); };
    box.addEventListener('change', apply);
    apply();
  });
  var state = document.getElementById('live-state');
  var source = new EventSource(table.getAttribute('data-stream'));
  source.onopen = function () { state.textContent = 'live'; };
  source.onerror = function () { state.textContent = 'live log disconnected (retrying)'; };
  source.onmessage = function (message) {
    var e = JSON.parse(message.data);
    var row = document.createElement('tr');
    row.className = e.decision === 'deny' ? 'deny' : 'allow';
    [e.time, e.decision, e.kind, e.host + ':' + e.port, e.rule || '', e.reason, e.bytesUp + '/' + e.bytesDown]
      .forEach(function (text) { var td = document.createElement('td'); td.textContent = String(text); row.appendChild(td); });
    table.tBodies[0].appendChild(row);
  };
})();
// Session page: the transcript as it is printed (text from the server-sent events, appended as text).
(function () {
  var pre = document.getElementById('transcript');
  if (!pre) return;
  var state = document.getElementById('live-state');
  var source = new EventSource(pre.getAttribute('data-stream'));
  source.onopen = function () { state.textContent = 'live'; };
  source.onerror = function () { state.textContent = 'disconnected (retrying)'; };
  source.onmessage = function (message) {
    pre.appendChild(document.createTextNode(JSON.parse(message.data)));
    window.scrollTo(0, document.body.scrollHeight);
  };
  source.addEventListener('end', function () { source.close(); state.textContent = 'ended'; });
})();
`;

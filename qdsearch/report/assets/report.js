/* qdsearch report: renders the page from the JSON data embedded in it (#qd-data).
   Hand-written, no framework, no network except the live view's own JSON endpoints.
   Every text from the run is put into the page with textContent, never as markup. */
(function () {
  'use strict';

  var D = JSON.parse(document.getElementById('qd-data').textContent);
  var UI = { view: 0, cell: null, selected: null, sort: 'quality', dir: -1, search: '', op: '', minq: '', label: '' };
  var byId = {};

  // ------------------------------------------------------------------ helpers
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function add(parent, child) { parent.appendChild(child); return child; }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function $(id) { return document.getElementById(id); }
  function num(x, d) {
    if (x === null || x === undefined || x === '') return '—';
    if (typeof x !== 'number') return String(x);
    if (d === undefined) return Number.isInteger(x) ? x.toLocaleString('en') : x.toFixed(2);
    return x.toFixed(d);
  }
  function big(x) {
    if (typeof x !== 'number') return num(x);
    if (Math.abs(x) >= 1e6) return (x / 1e6).toFixed(2) + 'M';
    if (Math.abs(x) >= 1e4) return (x / 1e3).toFixed(1) + 'k';
    return num(x);
  }
  function cut(s, n) { s = s === null || s === undefined ? '' : String(s); return s.length <= n ? s : s.slice(0, n - 1) + '…'; }
  function usd(x) { return '$' + (x || 0).toFixed(4); }

  // viridis, sampled; quality 1..10 maps onto it
  var VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
    [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
  function colour(q) {
    var t = Math.max(0, Math.min(1, (q - 1) / 9)) * (VIRIDIS.length - 1);
    var i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return 'rgb(' + [0, 1, 2].map(function (k) { return Math.round(a[k] + f * (b[k] - a[k])); }).join(',') + ')';
  }
  function ink(q) { return q < 6.5 ? '#fff' : '#111'; }

  function table(cols, rows, opts) {
    // cols: [{key, label, num, text, fmt}], rows: objects; opts.onRow(row, tr)
    var t = el('table'), thead = add(t, el('thead')), hr = add(thead, el('tr')), tb = add(t, el('tbody'));
    cols.forEach(function (c) { add(hr, el('th', '', c.label)); });
    rows.forEach(function (r) {
      var tr = add(tb, el('tr'));
      cols.forEach(function (c) {
        var v = r[c.key], td = add(tr, el('td', c.num ? 'num' : (c.text ? 'text' : '')));
        var shown = c.fmt ? c.fmt(v, r) : (c.num ? num(v) : (v === null || v === undefined ? '' : String(v)));
        if (c.text) add(td, el('div', 'clamp', shown)); else td.textContent = shown;
      });
      if (opts && opts.onRow) opts.onRow(r, tr);
    });
    if (!rows.length) { var tr = add(tb, el('tr')), td = add(tr, el('td', 'muted', 'none')); td.colSpan = cols.length; }
    return t;
  }

  // ------------------------------------------------------------------ key figures
  function renderKpis() {
    var s = D.summary, box = clear($('kpis'));
    var items = [
      ['QD-score', num(s.qd_score, 1)], ['coverage', num(s.coverage, 3)],
      ['elites', s.elites + ' / ' + D.meta.cells + ' cells'], ['best quality', num(s.best_quality, 1)],
      ['seeds', s.seeds_accepted + ' / ' + s.seeds], ['children', num(s.children)], ['accepted', num(s.accepted)],
      ['new cells', num(s.new_cells)], ['improvements', num(s.improvements)],
      ['LLM calls', num(s.calls) + (s.failed_calls ? ' (' + s.failed_calls + ' failed)' : '')],
      ['tokens', big(s.tokens)], ['cost', D.cost.prices_set ? usd(s.cost_usd) : 'no prices set'],
      ['wall time', num(Math.round(s.wall_s || 0)) + ' s']
    ];
    var h = s.holdout;
    if (h) items.push([h.split + ' score of the best prompt (' + h.n + ' held-out examples; ' + h.elites + ' elites scored)',
      num(h.best_test, 3)]);
    items.forEach(function (kv) {
      var k = add(box, el('div', 'kpi'));
      add(k, el('b', '', kv[1]));
      add(k, el('span', '', kv[0]));
    });
    $('meta-stop').textContent = D.meta.stop_reason || (D.meta.live ? 'running' : 'n/a');
    $('meta-cells').textContent = D.meta.cells;
    $('meta-time').textContent = D.meta.generated;
    var asof = $('meta-asof');
    asof.hidden = !D.meta.live;
    asof.textContent = 'The archive below is as of ' + s.children + ' children (' + D.meta.generated +
      '); it reloads as the campaign writes its folder. The box above is updated every two seconds.';
  }

  // ------------------------------------------------------------------ heatmap
  function viewCells(v) {
    // best elite (and all elites) per projected cell "x,y"
    var cells = {};
    D.elites.forEach(function (e) {
      var key = e.bins[v.x] + ',' + e.bins[v.y], c = cells[key] || (cells[key] = { best: null, all: [] });
      c.all.push(e);
      if (!c.best || e.quality > c.best.quality) c.best = e;
    });
    return cells;
  }
  function landingText(land) {
    if (!land) return 'empty: no candidate was ever measured into this cell';
    var parts = [];
    if (land.rejected) {
      var rs = Object.keys(land.rejects).sort(function (a, b) { return land.rejects[b] - land.rejects[a]; });
      parts.push(land.rejected + ' rejected child' + (land.rejected > 1 ? 'ren' : '') + ' landed here (' +
        rs.map(function (r) { return r + ' ' + land.rejects[r]; }).join(', ') + ')');
    }
    if (land.accepted) parts.push(land.accepted + ' accepted');
    return 'empty: ' + parts.join('; ');
  }
  function renderViews() {
    var box = clear($('views'));
    if (D.views.length < 2) return;
    D.views.forEach(function (v, i) {
      var b = add(box, el('button', i === UI.view ? 'on' : '', v.title));
      b.type = 'button';
      b.addEventListener('click', function () { UI.view = i; UI.cell = null; renderViews(); renderHeatmap(); });
    });
  }
  function renderHeatmap() {
    var box = clear($('heatmap'));
    if (!D.views.length) { add(box, el('p', 'muted', 'no archive yet (the seed phase has not finished)')); return; }
    var v = D.views[Math.min(UI.view, D.views.length - 1)], ax = D.axes[v.x], ay = D.axes[v.y];
    var cells = viewCells(v), lands = D.landings[Math.min(UI.view, D.landings.length - 1)] || {};
    var grid = add(box, el('div', 'heat'));
    grid.style.gridTemplateColumns = 'minmax(48px, var(--lab)) repeat(' + ax.bins + ', minmax(18px, 1fr))';
    // numeric rows read upwards (high values on top); named rows in order
    var rows = [];
    for (var r = 0; r < ay.bins; r++) rows.push(r);
    if (!ay.nominal) rows.reverse();
    rows.forEach(function (y) {
      var lab = add(grid, el('div', 'rlab', ay.ticks[y]));
      lab.title = ay.title + ': ' + ay.ticks[y];
      for (var x = 0; x < ax.bins; x++) {
        var key = x + ',' + y, c = cells[key], d = add(grid, el('div', 'cell'));
        d.setAttribute('data-cell', key);
        if (c) {
          d.style.background = colour(c.best.quality);
          d.style.color = ink(c.best.quality);
          d.textContent = c.best.quality.toFixed(0);
          d.setAttribute('data-id', c.best.id);
        } else {
          d.className = 'cell empty';
        }
        if (UI.cell === key) d.className += ' sel';
        (function (key, c, land, x, y) {
          d.addEventListener('mouseenter', function (ev) { showTip(ev, tipLines(c, land, ax, ay, x, y)); });
          d.addEventListener('mousemove', moveTip);
          d.addEventListener('mouseleave', hideTip);
          d.addEventListener('click', function () {
            UI.cell = key;
            if (c) select(c.best.id, c.all); else showEmpty(land, ax, ay, x, y);
            renderHeatmap();
          });
        })(key, c, lands[key], x, y);
      }
    });
    add(grid, el('div', ''));
    for (var x = 0; x < ax.bins; x++) {
      var cl = add(grid, el('div', 'clab', ax.ticks[x]));
      cl.title = ax.title + ': ' + ax.ticks[x];
    }
    add(grid, el('div', 'xtitle', ax.title + (ay.nominal ? '' : '   (rows: ' + ay.title + ', upwards)')));
    var leg = clear($('legend'));
    add(leg, el('span', '', 'quality 1'));
    var bar = add(leg, el('span', 'bar'));
    bar.style.background = 'linear-gradient(90deg,' + VIRIDIS.map(function (c) { return 'rgb(' + c.join(',') + ')'; }).join(',') + ')';
    add(leg, el('span', '', '10'));
    var sw = add(leg, el('span', 'sw cell empty'));
    sw.style.border = '1px solid #ccc';
    add(leg, el('span', '', 'empty cell'));
  }
  function tipLines(c, land, ax, ay, x, y) {
    var head = ax.title + ' ' + ax.ticks[x] + ' · ' + ay.title + ' ' + ay.ticks[y];
    if (!c) return [head, landingText(land)];
    var e = c.best;
    var out = [head, 'quality ' + num(e.quality, 1) + ' · complexity ' + num(e.complexity, 2) + ' · operator ' + e.operator,
      cut(e.instruction, 140)];
    if (c.all.length > 1) out.push(c.all.length + ' elites project into this cell');
    return out;
  }
  var tip = null;
  function showTip(ev, lines) {
    tip = $('tip');
    clear(tip);
    lines.forEach(function (l, i) { add(tip, el('div', i === 0 ? 'muted' : '', l)); });
    tip.hidden = false;
    moveTip(ev);
  }
  function moveTip(ev) {
    if (!tip || tip.hidden) return;
    var x = ev.clientX + 14, y = ev.clientY + 14, w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 4) x = Math.max(4, ev.clientX - w - 10);
    if (y + h > window.innerHeight - 4) y = Math.max(4, ev.clientY - h - 10);
    tip.style.left = x + 'px';
    tip.style.top = y + 'px';
  }
  function hideTip() { if (tip) tip.hidden = true; }

  // ------------------------------------------------------------------ the selected sample
  function showEmpty(land, ax, ay, x, y) {
    UI.selected = null;
    var box = clear($('detail'));
    add(box, el('h2', '', 'Empty cell'));
    add(box, el('p', '', ax.title + ' ' + ax.ticks[x] + ' · ' + ay.title + ' ' + ay.ticks[y]));
    add(box, el('p', '', landingText(land)));
    add(box, el('p', 'muted small', 'A MAP-Elites cell never empties once filled: an empty cell was never reached by an ' +
      'accepted sample. Children rejected for being near duplicates are measured (and counted here) but not kept.'));
    renderElitesTable();
  }
  function field(box, title, text) {
    if (text === null || text === undefined || text === '') return;
    add(box, el('h3', '', title));
    add(box, el('pre', 'field', text));
  }
  function select(id, siblings) {
    var e = byId[id];
    if (!e) return;
    UI.selected = id;
    var key = null;
    var v = D.views[Math.min(UI.view, D.views.length - 1)];
    if (v) key = e.bins[v.x] + ',' + e.bins[v.y];
    if (key) UI.cell = key;
    var box = clear($('detail'));
    box.setAttribute('data-id', id);
    var s = add(box, el('div', 'sample'));
    add(s, el('h2', '', 'Elite ' + id));
    var tags = add(s, el('div', 'tags'));
    [['quality', num(e.quality, 1)], ['complexity', num(e.complexity, 2)], ['operator', e.operator],
      ['generation', e.generation], ['cell', e.cell], ['found at child', e.step]].forEach(function (kv) {
      var t = add(tags, el('span', '', kv[0] + ' '));
      add(t, el('b', '', kv[1]));
    });
    var place = add(s, el('div', 'tags small muted'));
    D.axes.forEach(function (a, i) {
      add(place, el('span', '', a.title + ': ' + (a.nominal ? a.ticks[e.bins[i]] : num(e.measures[i], 2))));
    });
    field(s, 'Instruction', e.instruction);
    field(s, 'Input', e.input);
    field(s, 'Response', e.response);
    field(s, 'Judge reason', e.judge_reason);
    if (e.selection) add(s, el('p', 'muted small', 'operator chosen: ' + e.selection));
    renderLineage(s, e);
    if (siblings && siblings.length > 1) {
      add(s, el('h3', '', 'Other elites in this projected cell'));
      var ul = add(s, el('ul'));
      siblings.filter(function (o) { return o.id !== id; }).forEach(function (o) {
        var li = add(ul, el('li'));
        var b = add(li, el('button', 'linkish', o.id));
        b.type = 'button';
        b.addEventListener('click', function () { select(o.id, siblings); });
        add(li, el('span', '', ' quality ' + num(o.quality, 1) + ': ' + cut(o.instruction, 90)));
      });
    }
    renderElitesTable();
  }
  function renderLineage(box, e) {
    var chain = [], cur = e.id, seen = {};
    while (cur && !seen[cur]) {
      seen[cur] = true;
      var n = D.lineage[cur];
      if (!n) break;
      chain.push(n);
      cur = n.parent_id;
    }
    chain.reverse();
    add(box, el('h3', '', 'Lineage (' + chain.length + ' step' + (chain.length === 1 ? '' : 's') + ', from its seed)'));
    var ol = add(box, el('ol', 'lineage'));
    chain.forEach(function (n, i) {
      var li = add(ol, el('li', n.id === e.id ? 'here' : ''));
      if (n.missing) { add(li, el('span', 'muted', n.id + ' (not in this log)')); return; }
      var head = add(li, el('div'));
      add(head, el('span', 'op', i === 0 && n.operator === 'seed' ? 'seed' : n.operator));
      add(head, el('span', '', ' → ' + n.id + ' · quality ' + num(n.quality, 1) + ' · complexity ' +
        num(n.complexity, 2) + (n.add_status ? ' · ' + n.add_status : '')));
      var det = add(li, el('details'));
      add(det, el('summary', 'small', cut(n.instruction, 120)));
      add(det, el('pre', 'field', n.instruction + (n.input ? '\n\n' + n.input : '')));
      if (n.response) add(det, el('pre', 'field', n.response));
      if (n.judge_reason) add(det, el('p', 'muted small', 'judge: ' + n.judge_reason));
    });
  }

  // ------------------------------------------------------------------ elites table
  var COLS = [
    { key: 'id', label: 'id' }, { key: 'quality', label: 'quality', num: 1, d: 1 },
    { key: 'complexity', label: 'complexity', num: 1, d: 2 }, { key: 'operator', label: 'operator' },
    { key: 'place', label: 'cell', text: 1 }, { key: 'generation', label: 'gen', num: 1, cls: 'opt' },
    { key: 'instruction', label: 'instruction', text: 1 }
  ];
  function place(e) {
    return D.axes.map(function (a, i) { return a.ticks[e.bins[i]]; }).join(' · ');
  }
  function matches(e) {
    if (UI.op && e.operator !== UI.op) return false;
    if (UI.minq !== '' && !(e.quality >= Number(UI.minq))) return false;
    if (UI.label && e.labels.indexOf(UI.label) < 0) return false;
    if (UI.search) {
      var hay = (e.id + '\n' + e.instruction + '\n' + e.input + '\n' + e.response + '\n' + e.judge_reason + '\n' +
        e.operator + '\n' + e.labels.join('\n')).toLowerCase();
      var words = UI.search.toLowerCase().split(/\s+/).filter(Boolean);
      for (var i = 0; i < words.length; i++) if (hay.indexOf(words[i]) < 0) return false;
    }
    return true;
  }
  function renderControls() {
    var box = clear($('elite-controls'));
    var q = add(box, el('input'));
    q.type = 'search'; q.id = 'elite-search'; q.placeholder = 'search instruction, response, judge reason, id…';
    q.value = UI.search;
    q.addEventListener('input', function () { UI.search = q.value; renderElitesTable(); });
    var ops = {};
    D.elites.forEach(function (e) { ops[e.operator] = 1; });
    var sel = add(box, el('select'));
    sel.id = 'elite-operator';
    add(sel, el('option', '', 'every operator')).value = '';
    Object.keys(ops).sort().forEach(function (o) { var opt = add(sel, el('option', '', o)); opt.value = o; });
    sel.value = UI.op;
    sel.addEventListener('change', function () { UI.op = sel.value; renderElitesTable(); });
    var named = D.axes.filter(function (a) { return a.nominal; });
    if (named.length) {
      var ls = add(box, el('select'));
      ls.id = 'elite-label';
      add(ls, el('option', '', 'every ' + named.map(function (a) { return a.title; }).join(' / '))).value = '';
      named.forEach(function (a) { a.ticks.forEach(function (t) { var o = add(ls, el('option', '', cut(t, 60))); o.value = t; }); });
      ls.value = UI.label;
      ls.addEventListener('change', function () { UI.label = ls.value; renderElitesTable(); });
    }
    var lab = add(box, el('label', 'small', 'quality ≥ '));
    var mq = add(lab, el('input'));
    mq.type = 'number'; mq.min = '1'; mq.max = '10'; mq.step = '0.5'; mq.id = 'elite-minq'; mq.value = UI.minq;
    mq.addEventListener('input', function () { UI.minq = mq.value; renderElitesTable(); });
    add(box, el('span', 'muted small', '')).id = 'elite-count';
  }
  function renderElitesTable() {
    var t = clear($('elites'));
    var rows = D.elites.filter(matches).map(function (e) {
      return { e: e, id: e.id, quality: e.quality, complexity: e.complexity, operator: e.operator, place: place(e),
        generation: e.generation, instruction: e.instruction };
    });
    var k = UI.sort, dir = UI.dir;
    rows.sort(function (a, b) {
      var x = a[k], y = b[k];
      if (typeof x === 'string') return dir * x.localeCompare(y) || a.id.localeCompare(b.id);
      return dir * (x - y) || a.id.localeCompare(b.id);
    });
    var hr = add(add(t, el('thead')), el('tr'));
    COLS.forEach(function (c) {
      var th = add(hr, el('th', 'sortable' + (c.key === k ? (dir > 0 ? ' asc' : ' desc') : '') + (c.cls ? ' ' + c.cls : ''), c.label));
      th.setAttribute('data-key', c.key);
      th.addEventListener('click', function () {
        if (UI.sort === c.key) UI.dir = -UI.dir; else { UI.sort = c.key; UI.dir = c.num ? -1 : 1; }
        renderElitesTable();
      });
    });
    var tb = add(t, el('tbody'));
    rows.forEach(function (r) {
      var tr = add(tb, el('tr', 'row' + (r.id === UI.selected ? ' sel' : '')));
      tr.setAttribute('data-id', r.id);
      COLS.forEach(function (c) {
        var v = r[c.key];
        var td = add(tr, el('td', (c.num ? 'num' : (c.text ? 'text' : '')) + (c.cls ? ' ' + c.cls : ''), c.text ? null : (c.num ? num(v, c.d) : v)));
        if (c.text) add(td, el('div', 'clamp', cut(v, 220)));
      });
      tr.addEventListener('click', function () { select(r.id); renderHeatmap(); });
    });
    $('elite-count').textContent = rows.length + ' of ' + D.elites.length + ' elites';
  }

  // ------------------------------------------------------------------ other sections
  function renderRegions() {
    var sec = $('regions-sec'), box = clear($('regions'));
    sec.hidden = !D.regions.length;
    box.appendChild(table([
      { key: 'index', label: '#', num: 1 }, { key: 'name', label: 'region', text: 1 },
      { key: 'filled', label: 'cells filled', fmt: function (v, r) { return v + ' / ' + r.of; } },
      { key: 'best_quality', label: 'best quality', num: 1, fmt: function (v) { return num(v, 1); } },
      { key: 'best_id', label: 'best elite', fmt: function (v) { return v ? cut((byId[v] || {}).instruction, 140) : '(empty)'; } }
    ], D.regions, { onRow: function (r, tr) {
      if (!r.best_id) return;
      tr.className = 'row';
      tr.addEventListener('click', function () { select(r.best_id); renderHeatmap(); });
    } }));
  }
  function renderOperators() {
    var box = clear($('operators'));
    box.appendChild(table([
      { key: 'operator', label: 'operator' }, { key: 'children', label: 'children', num: 1 },
      { key: 'calls', label: 'calls', num: 1 }, { key: 'tokens', label: 'tokens', num: 1 },
      { key: 'cost_usd', label: 'cost', num: 1, fmt: function (v) { return D.cost.prices_set ? usd(v) : '—'; } },
      { key: 'accept_rate', label: 'accepted', num: 1, fmt: function (v) { return Math.round(100 * v) + '%'; } },
      { key: 'new_cells', label: 'new cells', num: 1 }, { key: 'improvements', label: 'improved', num: 1 },
      { key: 'qd_gain', label: 'QD gain', num: 1, fmt: function (v) { return num(v, 1); } },
      { key: 'qd_gain_per_1k_tok', label: 'gain / 1k tok', num: 1, fmt: function (v) { return num(v, 3); } },
      { key: 'top_rejects', label: 'top rejects', text: 1 }
    ], D.operators));
  }
  function meters(box, caps, priced) {
    var m = add(box, el('div', 'meter'));
    caps.forEach(function (c) {
      add(m, el('span', '', c.name));
      var track = add(m, el('div', 'track')), fill = add(track, el('div', 'fill'));
      var share = c.cap ? Math.min(1, c.used / c.cap) : 0;
      fill.style.width = (100 * share).toFixed(1) + '%';
      if (share >= 1) fill.className = 'fill full';
      var money = c.name.indexOf('USD') >= 0, used = money ? usd(c.used) : big(Math.round(c.used));
      if (money && !priced) used = 'not counted (no prices set)';
      add(m, el('span', 'small', c.cap ? used + ' / ' + (money ? usd(c.cap) : big(c.cap)) : used + (money && !priced ? '' : ' (no cap)')));
    });
  }
  function renderCost() {
    var c = D.cost, box = clear($('cost'));
    if (!c.prices_set) {
      add(box, el('p', 'notice', 'No prices set: cost is not counted (set price_in_per_mtok and price_out_per_mtok ' +
        'of [endpoint], [target] or [grader] to see it). The spend below is calls and tokens.'));
    } else {
      add(box, el('p', '', 'cost ' + usd(c.cost_usd) + (c.lost_cost_usd ? ' (+ ' + usd(c.lost_cost_usd) +
        ' estimated for lost children)' : '') + ' · prices per million tokens: ' + c.prices.map(function (p) {
        return p.role + ' ' + (p.model || '') + ' in $' + p['in'] + ' / out $' + p.out; }).join('; ')));
    }
    add(box, el('p', '', num(c.calls) + ' LLM calls (' + num(c.failed_calls) + ' failed) · ' + big(c.prompt_tokens) +
      ' prompt + ' + big(c.completion_tokens) + ' completion tokens'));
    var k = c.cache;
    if (k && (k.hits || k.misses)) {
      add(box, el('p', '', 'request cache: ' + num(k.hits) + ' of ' + num(k.hits + k.misses) + ' calls looked up were ' +
        'answered from it (' + Math.round(100 * k.hit_rate) + '%), saving ' + big(k.saved_tokens) + ' tokens' +
        (c.prices_set ? ' and ' + usd(k.saved_cost_usd) : '')));
    }
    add(box, el('h3', '', 'Budget'));
    meters(box, c.caps, c.prices_set);
    function spend(title, obj) {
      add(box, el('h3', '', title));
      var rows = Object.keys(obj).sort().map(function (k) { var r = obj[k]; return {
        name: k, calls: r.calls, failed: r.failed, p: r.prompt_tokens, c: r.completion_tokens, cost: r.cost_usd }; });
      add(box, el('div', 'scroll')).appendChild(table([
        { key: 'name', label: title === 'By call kind' ? 'kind' : 'model' }, { key: 'calls', label: 'calls', num: 1 },
        { key: 'failed', label: 'failed', num: 1 }, { key: 'p', label: 'prompt tokens', num: 1 },
        { key: 'c', label: 'completion tokens', num: 1 },
        { key: 'cost', label: 'cost', num: 1, fmt: function (v) { return c.prices_set ? usd(v) : '—'; } }
      ], rows));
    }
    spend('By call kind', c.by_tag);
    spend('By model', c.by_model);
  }
  function renderRejects() {
    var box = clear($('rejects'));
    var rows = Object.keys(D.rejects).map(function (k) { return { reason: k, n: D.rejects[k] }; });
    box.appendChild(table([{ key: 'reason', label: 'reject reason' }, { key: 'n', label: 'children', num: 1 }], rows));
    var sb = clear($('seeds'));
    var rep = D.seed_report || {}, dropped = rep.dropped || [];
    if (rep.seeds !== undefined) add(sb, el('p', '', rep.seeds + ' seeds, ' + rep.judged + ' judged, ' + rep.in_archive + ' in the archive'));
    sb.appendChild(table([{ key: 'id', label: 'seed' }, { key: 'reason', label: 'why' }, { key: 'detail', label: 'detail', text: 1 },
      { key: 'instruction', label: 'instruction', text: 1, fmt: function (v) { return cut(v, 200); } }], dropped));
    var wb = clear($('warnings'));
    D.warnings.forEach(function (w) { add(wb, el('p', 'warn small', 'warning: ' + w)); });
  }
  function renderFigures() {
    var homes = { curves: $('curves'), operators: $('ops-time'), heatmap: $('figures') };
    Object.keys(homes).forEach(function (k) { clear(homes[k]); });
    D.figures.forEach(function (f) {
      var home = homes[f.section] || homes.heatmap;
      var fig = add(home, el('figure'));
      var img = add(fig, el('img'));
      img.alt = f.name;
      img.src = f.uri;
      if (f.section === 'heatmap') add(fig, el('figcaption', '', f.title));
    });
  }
  function markRendered() {
    var imgs = [].slice.call(document.images);
    var wait = imgs.map(function (i) {
      return i.complete ? Promise.resolve() : new Promise(function (ok) { i.addEventListener('load', ok); i.addEventListener('error', ok); });
    });
    Promise.all(wait).then(function () {
      var ok = imgs.every(function (i) { return i.complete && i.naturalWidth > 0; });
      document.body.setAttribute('data-rendered', ok ? 'ok' : 'broken-images');
    });
  }

  // ------------------------------------------------------------------ live view
  function renderLive(L) {
    var box = $('live');
    box.hidden = false;
    clear(box);
    var st = add(box, el('div', 'status' + (L.running ? '' : ' stopped'),
      (L.running ? '● live: ' : '○ ') + L.phase + ' · updated ' + Math.max(0, Math.round(Date.now() / 1000 - L.updated_unix)) + ' s ago'));
    st.id = 'live-status';
    if (L.error) add(box, el('p', 'warn small', L.error));
    var s = L.summary || {};
    add(box, el('p', 'small', 'QD-score ' + num(s.qd_score, 1) + ' · coverage ' + num(s.coverage, 3) + ' · elites ' +
      num(s.elites) + ' · children ' + num(s.children) + ' · calls ' + num(s.calls) + ' · tokens ' + big(s.tokens) +
      (L.prices_set ? ' · cost ' + usd(s.cost_usd) : ' · no prices set')));
    if (L.caps) meters(box, L.caps, L.prices_set);
    if (L.latest && L.latest.length) {
      add(box, el('h3', '', 'Latest elites'));
      var ul = add(box, el('ul', 'latest small'));
      L.latest.forEach(function (e) {
        var li = add(ul, el('li'));
        add(li, el('b', '', num(e.quality, 1)));
        add(li, el('span', '', ' ' + e.add_status + ' by ' + e.operator + ' (' + e.id + '): ' + cut(e.instruction, 160)));
      });
    }
  }
  function poll() {
    fetch('live.json', { cache: 'no-store' }).then(function (r) { return r.json(); }).then(function (L) {
      renderLive(L);
      if (L.data_version && L.data_version !== D.version) {
        return fetch('data.json', { cache: 'no-store' }).then(function (r) { return r.json(); }).then(function (nd) {
          D = nd;
          renderAll();
        });
      }
    }).catch(function () {
      var s = $('live-status');
      if (s) s.textContent = '○ the server stopped answering (the campaign or `qdsearch watch` ended)';
    }).then(function () { setTimeout(poll, 2000); });
  }

  function renderAll() {
    byId = {};
    D.elites.forEach(function (e) { byId[e.id] = e; });
    if (D.summary.holdout && !COLS.filter(function (c) { return c.key === 'test_score'; }).length) {
      COLS.splice(2, 0, { key: 'test_score', label: 'test', num: 1, d: 3 });  // held-out score of each elite
    }
    document.body.setAttribute('data-version', D.version || '');
    renderKpis();
    renderViews();
    renderHeatmap();
    renderControls();
    if (UI.selected && byId[UI.selected]) select(UI.selected); else renderElitesTable();
    renderRegions();
    renderOperators();
    renderCost();
    renderRejects();
    renderFigures();
    markRendered();
  }

  renderAll();
  if (D.meta.live && /^https?:$/.test(location.protocol)) poll();
  window.qdReport = { select: select, data: function () { return D; } };
})();

// prom.js: a parser for the Prometheus text exposition format (version
// 0.0.4) and the histogram arithmetic the dashboard needs. It has no
// dependency; app.js and the browser test use window.MoatProm.
'use strict';
(function () {
  // parseValue reads a sample value: a Go float, NaN, +Inf or -Inf.
  function parseValue(s) {
    switch (s) {
      case 'NaN': return NaN;
      case '+Inf': case 'Inf': return Infinity;
      case '-Inf': return -Infinity;
    }
    const v = Number(s);
    if (s === '' || Number.isNaN(v)) throw new Error('bad sample value ' + JSON.stringify(s));
    return v;
  }

  // parseLabels reads `name="value",...}` from line at i (just after the
  // opening brace) and returns [labels, index after the closing brace].
  // Values may hold \\, \" and \n escapes and any other character.
  function parseLabels(line, i) {
    const labels = Object.create(null);
    for (;;) {
      while (line[i] === ' ' || line[i] === '\t') i++;
      if (line[i] === '}') return [labels, i + 1];
      const eq = line.indexOf('=', i);
      if (eq < 0) throw new Error('label without =');
      const name = line.slice(i, eq).trim();
      if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) throw new Error('bad label name ' + JSON.stringify(name));
      i = eq + 1;
      if (line[i] !== '"') throw new Error('label value not quoted');
      i++;
      let v = '';
      for (;;) {
        if (i >= line.length) throw new Error('unterminated label value');
        const c = line[i];
        if (c === '\\') {
          const n = line[i + 1];
          if (n === 'n') v += '\n'; else if (n === '\\' || n === '"') v += n; else v += '\\' + (n === undefined ? '' : n);
          i += 2;
          continue;
        }
        if (c === '"') { i++; break; }
        v += c;
        i++;
      }
      labels[name] = v;
      while (line[i] === ' ' || line[i] === '\t') i++;
      if (line[i] === ',') { i++; continue; }
      if (line[i] === '}') return [labels, i + 1];
      throw new Error('expected , or } after a label');
    }
  }

  // parse returns a Map from metric name to its samples, each
  // {labels, value}. Comment and blank lines are skipped; a malformed line
  // throws, naming its number, rather than yielding wrong numbers.
  function parse(text) {
    const out = new Map();
    const lines = text.split('\n');
    for (let n = 0; n < lines.length; n++) {
      const line = lines[n].replace(/\r$/, '');
      if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
      try {
        const m = /^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
        if (!m) throw new Error('bad metric name');
        let i = m[0].length;
        let labels = Object.create(null);
        while (line[i] === ' ' || line[i] === '\t') i++;
        if (line[i] === '{') [labels, i] = parseLabels(line, i + 1);
        const rest = line.slice(i).trim().split(/\s+/);
        if (rest.length < 1 || rest.length > 2 || rest[0] === '') throw new Error('expected a value and an optional timestamp');
        const value = parseValue(rest[0]);
        if (!out.has(m[1])) out.set(m[1], []);
        out.get(m[1]).push({ labels, value });
      } catch (e) {
        throw new Error('metrics line ' + (n + 1) + ': ' + e.message);
      }
    }
    return out;
  }

  // sum adds the values of name's samples whose labels match every entry of
  // where; 0 when there are none.
  function sum(metrics, name, where) {
    let s = 0;
    for (const smp of metrics.get(name) || []) {
      let ok = true;
      for (const k in where || {}) if (smp.labels[k] !== where[k]) { ok = false; break; }
      if (ok) s += smp.value;
    }
    return s;
  }

  // sumBy adds name's sample values grouped by the value of label.
  function sumBy(metrics, name, label) {
    const m = new Map();
    for (const smp of metrics.get(name) || []) {
      const k = smp.labels[label];
      if (k === undefined) continue;
      m.set(k, (m.get(k) || 0) + smp.value);
    }
    return m;
  }

  // histogram sums a histogram over all its series: {buckets: [[le, count],
  // ...] sorted by le, sum, count}.
  function histogram(metrics, name) {
    const byLe = new Map();
    for (const smp of metrics.get(name + '_bucket') || []) {
      const le = parseValue(smp.labels.le === undefined ? '' : smp.labels.le);
      byLe.set(le, (byLe.get(le) || 0) + smp.value);
    }
    const buckets = [...byLe.entries()].sort((a, b) => a[0] - b[0]);
    return { buckets, sum: sum(metrics, name + '_sum'), count: sum(metrics, name + '_count') };
  }

  // delta returns the histogram of the observations between two scrapes
  // (later minus earlier), or null after a counter reset.
  function delta(later, earlier) {
    if (!earlier) return later;
    const prev = new Map(earlier.buckets);
    const buckets = later.buckets.map(([le, c]) => [le, c - (prev.get(le) || 0)]);
    const d = { buckets, sum: later.sum - earlier.sum, count: later.count - earlier.count };
    if (d.count < 0 || buckets.some(([, c]) => c < 0)) return null;
    return d;
  }

  // quantile estimates the q-quantile (0..1) of a histogram as Prometheus's
  // histogram_quantile does: linear interpolation inside the bucket that
  // holds the rank, the lower bound of the first bucket taken as 0, and the
  // upper bound of the highest finite bucket when the rank falls in +Inf.
  // It returns NaN for an empty histogram.
  function quantile(q, h) {
    if (!h || h.buckets.length === 0) return NaN;
    const b = h.buckets;
    const total = b[b.length - 1][1];
    if (!(total > 0)) return NaN;
    const rank = q * total;
    let i = 0;
    while (i < b.length - 1 && b[i][1] < rank) i++;
    if (b[i][0] === Infinity) return i > 0 ? b[i - 1][0] : NaN;
    const lower = i > 0 ? b[i - 1][0] : 0;
    const below = i > 0 ? b[i - 1][1] : 0;
    const inBucket = b[i][1] - below;
    if (inBucket <= 0) return b[i][0];
    return lower + (b[i][0] - lower) * ((rank - below) / inBucket);
  }

  window.MoatProm = Object.freeze({ parse, sum, sumBy, histogram, delta, quantile });
})();

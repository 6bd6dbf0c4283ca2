// Injected at the end of a rendered email by tests/cli/appearance.rs: for
// every visible element that holds text of its own, the WCAG 2 contrast
// ratio of its computed colour against the background it is painted on
// (ancestors' background colours composited over the canvas), written as
// JSON into <pre id="lp-contrast"> for `chromium --dump-dom` to hand back.
(function () {
  function parse(c) {
    var m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    var p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  }
  function over(top, bottom) {
    var a = top.a + bottom.a * (1 - top.a);
    if (a === 0) return { r: 0, g: 0, b: 0, a: 0 };
    function mix(t, b) { return (t * top.a + b * bottom.a * (1 - top.a)) / a; }
    return { r: mix(top.r, bottom.r), g: mix(top.g, bottom.g), b: mix(top.b, bottom.b), a: a };
  }
  function luminance(c) {
    function ch(v) { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }
    return 0.2126 * ch(c.r) + 0.7152 * ch(c.g) + 0.0722 * ch(c.b);
  }
  var probe = document.createElement('div');
  probe.style.background = 'Canvas';
  document.body.appendChild(probe);
  var canvas = parse(getComputedStyle(probe).backgroundColor) || { r: 255, g: 255, b: 255, a: 1 };
  canvas.a = 1;
  probe.remove();
  function background(el) {
    var layers = [];
    for (var e = el; e && e.nodeType === 1; e = e.parentElement) {
      var bg = parse(getComputedStyle(e).backgroundColor);
      if (bg && bg.a > 0) layers.push(bg);
      if (bg && bg.a === 1) break;
    }
    var c = canvas;
    for (var i = layers.length - 1; i >= 0; i--) c = over(layers[i], c);
    return c;
  }
  var checked = 0, failures = [];
  var all = document.body.getElementsByTagName('*');
  for (var i = 0; i < all.length; i++) {
    var el = all[i];
    var own = '';
    for (var n = el.firstChild; n; n = n.nextSibling) if (n.nodeType === 3) own += n.nodeValue;
    own = own.replace(/[\s\u034f\u200c\u00a0]+/g, ' ').trim();
    if (!own || el.closest('script, style, title, .lp-preheader')) continue;
    if (el.getClientRects().length === 0) continue;
    var style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.display === 'none') continue;
    var fg = parse(style.color);
    var bg = background(el);
    fg = over(fg, bg);
    var l1 = luminance(fg), l2 = luminance(bg);
    var ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    checked++;
    if (ratio < 4.5) {
      failures.push({ tag: el.tagName.toLowerCase(), text: own.slice(0, 60), color: style.color,
                      background: 'rgb(' + [bg.r, bg.g, bg.b].map(Math.round).join(', ') + ')',
                      ratio: Math.round(ratio * 100) / 100 });
    }
  }
  var out = document.createElement('pre');
  out.id = 'lp-contrast';
  out.textContent = JSON.stringify({ dark: matchMedia('(prefers-color-scheme: dark)').matches,
                                     checked: checked, failures: failures });
  document.body.appendChild(out);
})();

// A small, safe Markdown renderer for model output.
//
// Safety: model text only ever reaches the DOM through createElement + textContent (or
// createTextNode). No innerHTML, no attributes from model text except link hrefs that pass
// an allow-list of schemes (http, https, mailto). "<script>" in a reply is just text.
//
// Supported: paragraphs (single newlines become line breaks), # headings, > quotes,
// - / * / 1. lists, ``` fenced code (an unclosed fence renders as code while it streams),
// --- rules, `code`, **bold**, *italic* / _italic_, ~~strike~~, [links](https://...).

const SAFE_SCHEMES = new Set(["http:", "https:", "mailto:"]);

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

/** The href to use for a link target, or null if it is not safe. */
export function safeHref(raw) {
  const href = raw.trim();
  try {
    const url = new URL(href, globalThis.location ? globalThis.location.href : "http://x/");
    return SAFE_SCHEMES.has(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

// Inline rules, tried at each position; the earliest match wins (ties: list order).
const INLINE = [
  { re: /`([^`\n]+)`/, make: (m) => text(el("code"), m[1]) },
  { re: /\*\*(?=\S)([\s\S]*?\S)\*\*/, make: (m) => inline(el("strong"), m[1]) },
  { re: /__(?=\S)([\s\S]*?\S)__/, make: (m) => inline(el("strong"), m[1]) },
  { re: /~~(?=\S)([\s\S]*?\S)~~/, make: (m) => inline(el("del"), m[1]) },
  { re: /\*(?=[^\s*])([^*]*?[^\s*])\*/, make: (m) => inline(el("em"), m[1]) },
  { re: /(^|[^\w])_(?=[^\s_])([^_]*?[^\s_])_(?!\w)/, lead: 1, make: (m) => inline(el("em"), m[2]) },
  {
    re: /\[([^\]\n]+)\]\(([^()\s]+)\)/,
    make: (m) => {
      const href = safeHref(m[2]);
      if (!href) return document.createTextNode(m[0]);
      const a = inline(el("a"), m[1]);
      a.href = href;
      a.target = "_blank";
      a.rel = "noopener noreferrer nofollow";
      return a;
    },
  },
];

function text(node, value) {
  node.textContent = value;
  return node;
}

/** Append inline-formatted `src` to `parent` (text nodes and safe elements only). */
export function inline(parent, src) {
  let rest = src;
  while (rest) {
    let best = null;
    for (const rule of INLINE) {
      const m = rule.re.exec(rest);
      if (!m) continue;
      const leadLen = rule.lead ? m[rule.lead].length : 0;
      const start = m.index + leadLen;
      if (!best || start < best.start) best = { rule, m, start, end: m.index + m[0].length };
    }
    if (!best) {
      parent.appendChild(document.createTextNode(rest));
      break;
    }
    if (best.start > 0) parent.appendChild(document.createTextNode(rest.slice(0, best.start)));
    parent.appendChild(best.rule.make(best.m));
    rest = rest.slice(best.end);
  }
  return parent;
}

function paragraph(lines) {
  const p = el("p");
  lines.forEach((line, i) => {
    if (i) p.appendChild(el("br"));
    inline(p, line);
  });
  return p;
}

const FENCE = /^\s{0,3}(```+|~~~+)\s*([\w+#.-]*)\s*$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
const BULLET = /^(\s*)[-*+]\s+(.*)$/;
const ORDERED = /^(\s*)(\d{1,9})[.)]\s+(.*)$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;

/** Build the DOM for `src` as a DocumentFragment. */
export function renderMarkdown(src) {
  const frag = document.createDocumentFragment();
  const lines = String(src).replace(/\r\n?/g, "\n").split("\n");
  let para = [];
  const flush = () => {
    if (para.length) frag.appendChild(paragraph(para));
    para = [];
  };
  for (let i = 0; i < lines.length; ) {
    const line = lines[i];
    let m;
    if ((m = FENCE.exec(line))) {
      flush();
      const fence = m[1];
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(fence)) body.push(lines[i++]);
      const closed = i < lines.length;
      i += 1;
      const pre = el("pre", closed ? "" : "open");
      const code = el("code");
      if (m[2]) {
        code.className = `language-${m[2].replace(/[^\w+#.-]/g, "")}`;
        pre.dataset.lang = m[2];
      }
      code.textContent = body.join("\n");
      pre.appendChild(code);
      frag.appendChild(pre);
      continue;
    }
    if (!line.trim()) {
      flush();
      i += 1;
      continue;
    }
    if ((m = HEADING.exec(line))) {
      flush();
      frag.appendChild(inline(el(`h${Math.min(6, m[1].length + 2)}`), m[2]));
      i += 1;
      continue;
    }
    if (RULE.test(line) && !para.length) {
      flush();
      frag.appendChild(el("hr"));
      i += 1;
      continue;
    }
    if (QUOTE.test(line)) {
      flush();
      const body = [];
      while (i < lines.length && (m = QUOTE.exec(lines[i]))) {
        body.push(m[1]);
        i += 1;
      }
      const quote = el("blockquote");
      quote.appendChild(renderMarkdown(body.join("\n")));
      frag.appendChild(quote);
      continue;
    }
    if (BULLET.test(line) || ORDERED.test(line)) {
      flush();
      const ordered = !BULLET.test(line);
      const list = el(ordered ? "ol" : "ul");
      if (ordered) {
        const start = Number.parseInt(ORDERED.exec(line)[2], 10);
        if (start !== 1) list.start = start;
      }
      while (i < lines.length) {
        const item = ordered ? ORDERED.exec(lines[i]) : BULLET.exec(lines[i]);
        if (item) {
          list.appendChild(inline(el("li"), ordered ? item[3] : item[2]));
          i += 1;
        } else if (lines[i].trim() && /^\s{2,}\S/.test(lines[i]) && list.lastChild) {
          // a continuation line of the last item
          list.lastChild.appendChild(el("br"));
          inline(list.lastChild, lines[i].trim());
          i += 1;
        } else {
          break;
        }
      }
      frag.appendChild(list);
      continue;
    }
    para.push(line);
    i += 1;
  }
  flush();
  return frag;
}

/** Replace `container`'s children with the rendering of `src`. */
export function renderInto(container, src) {
  container.replaceChildren(renderMarkdown(src));
}

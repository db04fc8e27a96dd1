/**
 * HTML built only through the `html` tag: every interpolated value is escaped unless it
 * is already `Html` (made by this tag), so a file name, a command or a log line from a
 * cell can never become markup.
 */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

type Part = Html | string | number | boolean | null | undefined | readonly Part[];

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

function render(part: Part): string {
  if (part === null || part === undefined || part === false) return '';
  if (part instanceof Html) return part.text;
  if (Array.isArray(part)) return part.map(render).join('');
  return escapeHtml(String(part));
}

export function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0]!;
  values.forEach((value, i) => (out += render(value) + strings[i + 1]!));
  return new Html(out);
}

/** A path segment for a URL built from cell names, receipt ids or file paths. */
export const seg = (value: string): string => encodeURIComponent(value);

/** The whole page around `body`: the stylesheet and script are files (the CSP forbids inline ones). */
export function page(title: string, body: Html, nav: Html = html``): string {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${title} · agentcell</title>
        <link rel="stylesheet" href="/assets/ui.css" />
        <script src="/assets/ui.js" defer></script>
      </head>
      <body>
        <header><a href="/">agentcell</a>${nav}</header>
        <main>
          <h1>${title}</h1>
          ${body}
        </main>
      </body>
    </html> `.text;
}

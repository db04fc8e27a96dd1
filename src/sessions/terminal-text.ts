/**
 * A terminal's output as plain text: escape sequences (CSI, OSC, DCS and the short
 * two-byte ones) removed, cursor moves as spaces or line breaks, `\r\n` as `\n` and a line
 * rewritten after `\r` as a new line, runs of empty lines as one, other control characters dropped. Streaming: a sequence split across chunks
 * waits for its end.
 */
// CSI ... final; OSC/DCS/SOS/PM/APC ... BEL or ST; ESC + one char (charset picks take two).
const SEQUENCE =
  /\x1b\[[0-?]*[ -/]*[@-~]|\x1b[\]PX^_][\s\S]*?(?:\x07|\x1b\\)|\x1b[()*+][\s\S]|\x1b[\s\S]|\x9b[0-?]*[ -/]*[@-~]/g;
// An unfinished sequence at the end of a chunk.
const UNFINISHED = /\x1b(?:\[[0-?]*[ -/]*|[\]PX^_][\s\S]*|[()*+])?$/;

export interface TerminalTextStream {
  push(chunk: string): string;
  end(): string;
}

export function terminalTextStream(): TerminalTextStream {
  let carry = '';
  let line = '';
  let blank = false;
  let cr = false;
  const convert = (text: string, final: boolean): string => {
    let input = carry + text;
    carry = '';
    if (!final) {
      const unfinished = UNFINISHED.exec(input);
      if (unfinished && input.length - unfinished.index < 4096) {
        carry = input.slice(unfinished.index);
        input = input.slice(0, unfinished.index);
      }
    }
    const plain = input.replace(SEQUENCE, cursorText).replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g, '');
    let out = '';
    const endLine = (): void => {
      // A redrawing TUI leaves runs of empty lines: one is kept.
      const text = line.trimEnd();
      if (text !== '' || !blank) out += `${text}\n`;
      blank = text === '';
      line = '';
    };
    for (const ch of plain) {
      if (ch === '\r') cr = true;
      else if (ch === '\n') {
        endLine();
        cr = false;
      } else {
        // A carriage return not ending a line starts a rewrite of it: a line of its own, nothing is lost.
        if (cr && line !== '') endLine();
        cr = false;
        line += ch;
      }
    }
    if (final) {
      out += line;
      line = '';
    }
    return out;
  };
  return { push: (chunk) => convert(chunk, false), end: () => convert('', true) };
}

/** Cursor moves a TUI draws with: to the right is blank space, to another row a new line. */
function cursorText(sequence: string): string {
  const csi = /^(?:\x1b\[|\x9b)([0-9;]*)([A-Za-z])$/.exec(sequence);
  if (!csi) return '';
  const n = Math.min(Number(csi[1] || '1') || 1, 200);
  if (csi[2] === 'C') return ' '.repeat(n);
  if (csi[2] === 'G') return ' ';
  return 'ABEFHfd'.includes(csi[2] ?? '') ? '\n' : '';
}

export function terminalText(raw: string): string {
  const stream = terminalTextStream();
  return stream.push(raw) + stream.end();
}

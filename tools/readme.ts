// The TypeScript blocks of README.md, for the test that typechecks every one of them and for the
// consumer project, whose handler is the README's "Use it in your service" block itself.

import { readFile } from "node:fs/promises";

export const readmePath = new URL("../README.md", import.meta.url);

export interface CodeBlock {
  /** The nearest heading above the block. */
  heading: string;
  /** 1-based line of the opening fence. */
  line: number;
  code: string;
}

/** Every ```ts (or ```typescript) block of `markdown`, in order. */
export function typescriptBlocks(markdown: string): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  const lines = markdown.split("\n");
  let heading = "";
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^#{1,6} /.test(line)) heading = line.replace(/^#+ /, "").trim();
    if (!/^```(ts|typescript)\s*$/.test(line)) continue;
    const start = i;
    const code: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) code.push(lines[i]!);
    if (i >= lines.length) throw new Error(`README.md:${start + 1}: code block never closed`);
    blocks.push({ heading, line: start + 1, code: `${code.join("\n")}\n` });
  }
  return blocks;
}

export async function readmeBlocks(): Promise<CodeBlock[]> {
  return typescriptBlocks(await readFile(readmePath, "utf8"));
}

/** The README's complete handler: the first TypeScript block under "Use it in your service". */
export async function serviceHandlerBlock(): Promise<CodeBlock> {
  const block = (await readmeBlocks()).find((b) => b.heading === "Use it in your service");
  if (block === undefined) {
    throw new Error('README.md has no ```ts block under "## Use it in your service"');
  }
  return block;
}

/** Module specifiers a block imports from (`import ... from "x"` and `import "x"`). */
export function importSpecifiers(code: string): string[] {
  return [...code.matchAll(/^\s*import\s+(?:[^"';]*?\s+from\s+)?["']([^"']+)["']/gm)].map(
    (match) => match[1]!,
  );
}

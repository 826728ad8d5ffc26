// The CLI's real flags, read from its source with the TypeScript parser (running the CLI to ask would
// start proxies or install capture rules): host/cli.ts's `switch (cmd)` names each command and the
// function it calls; that function's module (cli.ts itself or an imported one) holds the `parseArgs`
// option tables. Every table in that module counts (subcommands such as `capture rules` live there).

import ts from "typescript";
import { readFileSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

export interface FlagSpec {
  /** Takes a value (`type: "string"`) or not (`"boolean"`). */
  takesValue: boolean;
}
/** command -> flag name (without --) -> spec. */
export type CliFlags = Map<string, Map<string, FlagSpec>>;

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "../..");

function parse(file: string): ts.SourceFile {
  return ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true);
}

function propName(n: ts.PropertyName): string | undefined {
  return ts.isIdentifier(n) || ts.isStringLiteral(n) ? n.text : undefined;
}

/** The `options` tables of every parseArgs({ options: {…} }) call under `node`. */
function optionTables(node: ts.Node): Map<string, FlagSpec> {
  const out = new Map<string, FlagSpec>();
  const visit = (n: ts.Node): void => {
    if (ts.isCallExpression(n) && ts.isIdentifier(n.expression) && n.expression.text === "parseArgs") {
      const arg = n.arguments[0];
      if (arg && ts.isObjectLiteralExpression(arg)) {
        for (const p of arg.properties) {
          if (!ts.isPropertyAssignment(p) || propName(p.name) !== "options") continue;
          if (!ts.isObjectLiteralExpression(p.initializer)) continue;
          for (const o of p.initializer.properties) {
            if (!ts.isPropertyAssignment(o) || !ts.isObjectLiteralExpression(o.initializer)) continue;
            const name = propName(o.name);
            const type = o.initializer.properties.find(
              (q) => ts.isPropertyAssignment(q) && propName(q.name) === "type",
            );
            const t =
              type && ts.isPropertyAssignment(type) && ts.isStringLiteral(type.initializer)
                ? type.initializer.text
                : "";
            if (name) out.set(name, { takesValue: t === "string" });
          }
        }
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(node);
  return out;
}

/** The name of the function a `case "x": return f(...)` clause calls. */
function calledName(clause: ts.CaseClause): string | undefined {
  let name: string | undefined;
  const visit = (n: ts.Node): void => {
    if (!name && ts.isCallExpression(n) && ts.isIdentifier(n.expression)) name = n.expression.text;
    if (!name) ts.forEachChild(n, visit);
  };
  clause.statements.forEach(visit);
  return name;
}

/** The module a case clause loads with `import("./x.js")` (commands loaded when they run), as a .ts path. */
function importedIn(clause: ts.CaseClause, cliPath: string): string | undefined {
  let spec: string | undefined;
  const visit = (n: ts.Node): void => {
    if (
      !spec &&
      ts.isCallExpression(n) &&
      n.expression.kind === ts.SyntaxKind.ImportKeyword &&
      n.arguments[0] &&
      ts.isStringLiteral(n.arguments[0])
    )
      spec = n.arguments[0].text;
    if (!spec) ts.forEachChild(n, visit);
  };
  clause.statements.forEach(visit);
  const p = spec && join(dirname(cliPath), spec.replace(/\.js$/, ".ts"));
  return p && existsSync(p) ? p : undefined;
}

/** Where an identifier of cli.ts comes from: cli.ts itself, or the .ts module it imports it from. */
function moduleOf(cli: ts.SourceFile, cliPath: string, name: string): string {
  for (const st of cli.statements) {
    if (!ts.isImportDeclaration(st) || !st.importClause?.namedBindings) continue;
    const nb = st.importClause.namedBindings;
    if (!ts.isNamedImports(nb) || !nb.elements.some((e) => e.name.text === name)) continue;
    const spec = (st.moduleSpecifier as ts.StringLiteral).text.replace(/\.js$/, ".ts");
    const p = join(dirname(cliPath), spec);
    if (existsSync(p)) return p;
  }
  return cliPath;
}

/** The top-level function `name` in `file` (or the whole file when it is not found there). */
function functionNode(sf: ts.SourceFile, name: string): ts.Node {
  for (const st of sf.statements) {
    if (ts.isFunctionDeclaration(st) && st.name?.text === name) return st;
  }
  return sf;
}

export function cliFlags(cliPath = join(ROOT, "host/cli.ts")): CliFlags {
  const cli = parse(cliPath);
  const out: CliFlags = new Map();
  const visit = (n: ts.Node): void => {
    if (ts.isCaseClause(n) && ts.isStringLiteral(n.expression)) {
      const cmd = n.expression.text;
      const fn = calledName(n);
      const loaded = importedIn(n, cliPath);
      if (loaded && !cmd.startsWith("-")) {
        out.set(cmd, optionTables(parse(loaded)));
      } else if (fn && !cmd.startsWith("-")) {
        const file = moduleOf(cli, cliPath, fn);
        const sf = file === cliPath ? cli : parse(file);
        // Imported commands: every table of their module (subcommands); local ones: that function's.
        out.set(cmd, optionTables(file === cliPath ? functionNode(sf, fn) : sf));
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(cli);
  return out;
}

export interface HboneCommand {
  /** Where it was found, for messages. */
  where: string;
  /** The words after `hbone`. */
  words: string[];
}

/** Splits a shell command line into words: quotes removed, `\`-newline continuations joined, comments dropped. */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (const m of line.replace(/\\\n/g, " ").matchAll(re)) {
    if (m[3]?.startsWith("#")) break; // a shell comment
    words.push(m[1] ?? m[2] ?? m[3]!);
  }
  return words;
}

/** Every `hbone …` command in the fenced code blocks of a Markdown text (after `$ `, `sudo`, pipes, `&&`). */
export function hboneCommands(markdown: string, file: string): HboneCommand[] {
  const out: HboneCommand[] = [];
  const blocks = markdown.matchAll(/```[a-z]*\n([\s\S]*?)```/g);
  for (const b of blocks) {
    const text = b[1]!.replace(/\\\n\s*/g, " ");
    for (const line of text.split("\n")) {
      for (const part of line.split(/\s*(?:&&|\|\||;|\|)\s*/)) {
        const w = shellWords(part.replace(/^\s*\$\s+/, ""));
        while (w[0] === "sudo" || /^[A-Z_][A-Z0-9_]*=/.test(w[0] ?? "")) w.shift();
        if (w[0] === "hbone" || (w[0] === "npx" && w[1] === "hbone")) {
          out.push({ where: `${file}: ${part.trim()}`, words: w.slice(w[0] === "hbone" ? 1 : 2) });
        }
      }
    }
  }
  return out;
}

/** Problems with one command against the CLI's flags ([] = fine). `missing` lists commands the CLI lacks. */
export function checkCommand(c: HboneCommand, flags: CliFlags): { errors: string[]; missing?: string } {
  const [cmd, ...rest] = c.words;
  if (!cmd) return { errors: [`${c.where}: no command`] };
  const table = flags.get(cmd);
  if (!table) return { errors: [], missing: cmd };
  const errors: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const w = rest[i]!;
    if (!w.startsWith("--")) continue; // subcommands and values
    const [name, inline] = w.slice(2).split("=", 2) as [string, string | undefined];
    const spec = table.get(name);
    if (!spec) {
      errors.push(
        `${c.where}: hbone ${cmd} has no flag --${name} (it has ${[...table.keys()].map((k) => `--${k}`).join(" ")})`,
      );
      continue;
    }
    if (spec.takesValue && inline === undefined) {
      const v = rest[i + 1];
      if (v === undefined || v.startsWith("--")) errors.push(`${c.where}: --${name} needs a value`);
      else i++;
    } else if (!spec.takesValue && inline !== undefined) {
      errors.push(`${c.where}: --${name} takes no value`);
    }
  }
  return { errors };
}

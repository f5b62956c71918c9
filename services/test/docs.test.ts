/**
 * The commands the Markdown docs give work after the README's `npm ci`. Bun is a devDependency, so
 * it is not on the reader's PATH: commands go through an npm script or `npx bun …`, and a bare
 * `bun …` is allowed only where its sentence (or, in a code block, its comment or the paragraph
 * introducing the block) says it runs inside the image, where `bun` is on PATH. `npm run X` must
 * name a script in package.json, and the files that `bun`, `npx bun`, `node` and `bash` are given
 * must exist. Also: package.json `engines` is the oldest Node every locked dependency supports, and
 * the README's Requirements line and the Dockerfile's Node agree with it.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

const ROOT = path.resolve(import.meta.dir, "../..");
const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
  scripts: Record<string, string>;
  engines: { node: string };
};

/** Where a command's sentence, comment or introducing paragraph places it inside the image. */
const IN_IMAGE = /\b(?:in|inside) the (?:[\w-]+ )?(?:image|container)\b|\bimage's PATH\b/i;
const SHELL_LANGS = new Set(["", "sh", "bash", "shell", "console", "zsh"]);

interface Candidate {
  line: number;
  text: string; // shell text: a code-block line (continuations joined) or an inline code span
  context: string; // the text that may say "in the image"
  cwd: string; // relative to the repository root (a code block may `cd`)
  block: boolean;
}

interface Checked {
  problems: string[];
  commands: string[]; // every npm / npx / bun / node / bash command found
}

/** Code-block lines and inline code spans of one Markdown document, each with its context. */
function candidates(markdown: string): Candidate[] {
  const lines = markdown.split("\n");
  const out: Candidate[] = [];
  let paragraph: { start: number; lines: string[] } = { start: 0, lines: [] };
  let previous = ""; // the paragraph before a code block
  const flush = () => {
    const text = paragraph.lines.join("\n");
    if (text.trim()) {
      previous = text;
      // Sentences: a full stop, then whitespace and a capital letter.
      for (const sentence of text.split(/(?<=\.)\s+(?=[A-Z])/))
        for (const m of sentence.matchAll(/`([^`]+)`/g)) {
          const offset = text.indexOf(m[0]);
          const line = paragraph.start + text.slice(0, Math.max(offset, 0)).split("\n").length - 1;
          out.push({ line: line + 1, text: m[1]!.replace(/\s+/g, " "), context: sentence, cwd: ".", block: false });
        }
    }
    paragraph = { start: 0, lines: [] };
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const fence = /^\s*(```+|~~~+)\s*([\w-]*)/.exec(line);
    if (fence) {
      flush();
      const intro = previous;
      const close = fence[1]!;
      const shell = SHELL_LANGS.has(fence[2]!.toLowerCase());
      let cwd = ".";
      for (i++; i < lines.length && !lines[i]!.trim().startsWith(close); i++) {
        if (!shell) continue;
        const start = i;
        let text = lines[i]!;
        while (text.endsWith("\\") && i + 1 < lines.length) text = `${text.slice(0, -1)} ${lines[++i]!.trim()}`;
        const comment = /(?:^|\s)#\s.*$/.exec(text)?.[0] ?? "";
        const candidate = { line: start + 1, text: text.slice(0, text.length - comment.length), context: `${comment}\n${intro}`, cwd, block: true };
        out.push(candidate);
        const cd = /^\s*cd\s+(\S+)\s*(?:&&|$)/.exec(candidate.text)?.[1];
        if (cd) cwd = path.join(cwd, cd);
      }
      previous = "";
      continue;
    }
    // A blank line, a list item or a table row starts a new paragraph.
    if (!line.trim() || /^\s*([-*+]|\d+\.)\s/.test(line) || /^\s*\|/.test(line) || /^#{1,6}\s/.test(line)) flush();
    if (line.trim()) {
      if (!paragraph.lines.length) paragraph.start = i;
      paragraph.lines.push(line);
    }
  }
  flush();
  return out;
}

const isPath = (arg: string) => !/[<>…*$]/.test(arg) && (arg.includes("/") || /\.[cm]?[jt]s$/.test(arg));
const positional = (args: string[]) => args.filter((a) => !a.startsWith("-"));

/** Checks the npm, npx, bun, node and bash commands of one Markdown document. */
function checkMarkdown(markdown: string, file: string, root = ROOT, scripts = pkg.scripts): Checked {
  const problems: string[] = [];
  const commands: string[] = [];
  for (const c of candidates(markdown)) {
    const where = `${file}:${c.line}`;
    const exists = (p: string) => existsSync(path.join(root, c.cwd, p));
    const script = (name: string | undefined, command: string) => {
      if (name && !(name in scripts)) problems.push(`${where}: \`${command}\`: package.json has no script "${name}"`);
    };
    // Simple commands: split at && || ; | (good enough for documentation one-liners).
    for (const simple of c.text.replace(/^\s*\$\s+/, "").split(/&&|\|\||;|\|/)) {
      const words = simple.trim().split(/\s+/).filter(Boolean);
      while (words.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[0]!)) words.shift(); // VAR=value
      if (words.length < 2) continue; // a lone word (`bun`, `npm`) is a name, not a command
      const [tool, ...args] = words as [string, ...string[]];
      const command = words.join(" ");
      const bunArgs = (rest: string[]) => {
        const [sub, ...more] = positional(rest);
        if (sub === "run") {
          const target = positional(more)[0];
          if (target && !isPath(target)) script(target, command);
          else if (target && !exists(target)) problems.push(`${where}: \`${command}\`: ${target} does not exist`);
        } else if (sub === "test") {
          for (const p of positional(more).filter(isPath)) if (!exists(p)) problems.push(`${where}: \`${command}\`: ${p} does not exist`);
        } else if (sub && isPath(sub) && !exists(sub)) problems.push(`${where}: \`${command}\`: ${sub} does not exist`);
      };
      if (tool === "npm") {
        commands.push(command);
        const [sub, name] = positional(args);
        if (sub === "run" || sub === "run-script") script(name, command);
        else if (sub === "start" || sub === "test") script(sub, command);
        if (sub === "test") // npm test -- <paths>
          for (const p of positional(args).slice(1).filter(isPath)) if (!exists(p)) problems.push(`${where}: \`${command}\`: ${p} does not exist`);
      } else if (tool === "npx") {
        commands.push(command);
        const rest = args.filter((a) => !["-y", "--yes", "--no-install", "--no"].includes(a));
        if (rest[0] === "bun") bunArgs(rest.slice(1));
      } else if (tool === "bun") {
        commands.push(command);
        if (!IN_IMAGE.test(c.context))
          problems.push(`${where}: \`${command}\`: bun is not on PATH after npm ci; use an npm script or npx bun, or say it runs in the image`);
        bunArgs(args);
      } else if (tool === "node" || tool === "bash" || tool === "sh") {
        commands.push(command);
        const file = positional(args)[0];
        if (file && isPath(file) && !exists(file)) problems.push(`${where}: \`${command}\`: ${file} does not exist`);
      } else if (tool === "cd" && c.block && isPath(args[0]!) && !exists(args[0]!)) {
        problems.push(`${where}: \`${command}\`: no directory ${args[0]}`);
      }
    }
  }
  return { problems, commands };
}

/** The repository's Markdown files (not dependencies, not dot-directories). */
function markdownFiles(): string[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(path.join(ROOT, dir))) {
      if (name.startsWith(".") || name === "node_modules") continue;
      const rel = path.join(dir, name);
      if (statSync(path.join(ROOT, rel)).isDirectory()) walk(rel);
      else if (name.endsWith(".md")) files.push(rel);
    }
  };
  walk(".");
  return files.sort();
}

describe("the docs' commands", () => {
  const files = markdownFiles();
  const results = files.map((file) => checkMarkdown(readFileSync(path.join(ROOT, file), "utf8"), file));

  test("are found in every document that has some", () => {
    expect(files).toContain("README.md");
    expect(files).toContain("docs/deploy.md");
    expect(files).toContain("loadtest/README.md");
    const commands = results.flatMap((r) => r.commands);
    expect(commands).toContain("npm ci");
    expect(commands.some((c) => c.startsWith("npm run bench"))).toBe(true);
    expect(commands.length).toBeGreaterThan(15);
  });

  test("work after npm ci: scripts exist, paths exist, no bare bun outside the image", () => {
    expect(results.flatMap((r) => r.problems)).toEqual([]);
  });
});

describe("the docs' command check", () => {
  const problems = (markdown: string) => checkMarkdown(markdown, "doc.md").problems;

  test("refuses a bare bun, inline or in a code block", () => {
    expect(problems("Run them apart: `bun services/main.ts <role>` (or `EVENTLY_ROLE=<role>`).")).toHaveLength(1);
    expect(problems("```sh\nbun run bench --quick    # about 1 min\nbun loadtest/sink/main.ts\n```")).toHaveLength(2);
    expect(problems("```sh\nDELIVERY_ALLOW_PRIVATE_NETWORKS=true bun services/main.ts all\n```")).toHaveLength(1);
  });

  test("accepts bun where the sentence, comment or introduction says it runs in the image", () => {
    expect(problems("Probes `/health` with `bun deploy/docker/healthcheck.ts`, run inside the image.")).toEqual([]);
    expect(problems("From a checkout, `npm start`. In the image the entrypoint is `bun services/main.ts`.")).toEqual([]);
    expect(problems("```sh\nbun services/main.ts api   # in the image\n```")).toEqual([]);
    expect(problems("Inside the container:\n\n```sh\nbun services/main.ts api\n```")).toEqual([]);
    // The image is mentioned in another sentence: that does not cover this command.
    expect(problems("`bun services/main.ts all` runs everything. In the image the role is an argument.")).toHaveLength(1);
  });

  test("refuses unknown npm scripts and missing files", () => {
    expect(problems("`npm run no-such-script`")).toHaveLength(1);
    expect(problems("```sh\nnpm run -s no-such-script -- --quick\n```")).toHaveLength(1);
    expect(problems("`npx bun loadtest/no-such-file.ts`")).toHaveLength(1);
    expect(problems("`npx bun test services/test/no-such-dir`")).toHaveLength(1);
    expect(problems("`bash .ci/no-such-script`")).toHaveLength(1);
    expect(problems("`npm test -- services/test/no-such-dir`")).toHaveLength(1);
    expect(problems("```sh\ncd terraform/examples/no-such-example\n```")).toHaveLength(1);
  });

  test("accepts what works after npm ci", () => {
    const ok = [
      "`npm ci && npm start`",
      "`npm run bench -- --quick --cpu-prof=/tmp/prof`",
      "`SINK_SECRET=whsec_… PORT=9999 npm run sink`",
      "`npm test -- services/test/deploy`",
      "`npx bun services/core/config/table.ts`",
      "`npx bun test services/test/docs.test.ts`",
      "the `bun` npm package, Bun's `--cpu-prof`, `bun:test`",
      "```sh\ncd terraform/examples/basic\ncp terraform.tfvars.example terraform.tfvars\n```",
    ];
    for (const markdown of ok) expect(problems(markdown), markdown).toEqual([]);
  });
});

describe("the Node.js requirement", () => {
  const bound = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(pkg.engines.node);
  const minimum = bound ? [bound[1], bound[2] ?? "0", bound[3] ?? "0"].join(".") : undefined;
  const lock = JSON.parse(readFileSync(path.join(ROOT, "package-lock.json"), "utf8")) as {
    packages: Record<string, { engines?: { node?: string } | string[] }>;
  };
  const ranges = Object.entries(lock.packages)
    .filter(([name]) => name !== "")
    .map(([name, meta]) => [name, Array.isArray(meta.engines) ? undefined : meta.engines?.node] as const)
    .filter((entry): entry is readonly [string, string] => typeof entry[1] === "string");

  test("package.json engines.node is the oldest Node every locked package supports", () => {
    expect(minimum, `engines.node ${pkg.engines.node} should read >=X.Y.Z`).toBeDefined();
    expect(ranges.length).toBeGreaterThan(20);
    const unsupported = ranges.filter(([, range]) => !Bun.semver.satisfies(minimum!, range)).map(([n, r]) => `${n} wants ${r}`);
    expect(unsupported).toEqual([]);
    // And not older than needed: the release before the minimum is refused by some package.
    const [major, minor, patch] = minimum!.split(".").map(Number) as [number, number, number];
    const before = patch > 0 ? `${major}.${minor}.${patch - 1}` : minor > 0 ? `${major}.${minor - 1}.999` : `${major - 1}.999.999`;
    expect(ranges.some(([, range]) => !Bun.semver.satisfies(before, range)), `${before} would do`).toBe(true);
  });

  test("the README's Requirements line and the Dockerfile's Node agree with engines", () => {
    const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
    const stated = /^Requirements:.*?Node(?:\.js)? (\d+(?:\.\d+)*)/m.exec(readme)?.[1];
    expect(stated, "README: a line `Requirements: Node.js X.Y …`").toBeDefined();
    expect(`${stated}.0.0`.split(".").slice(0, 3).join(".")).toBe(minimum!);
    const dockerNode = /^ARG NODE_VERSION=(\d+)/m.exec(readFileSync(path.join(ROOT, "Dockerfile"), "utf8"))?.[1];
    expect(Number(dockerNode), "Dockerfile NODE_VERSION").toBeGreaterThanOrEqual(Number(minimum!.split(".")[0]));
  });
});

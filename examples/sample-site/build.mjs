// Builds the site into dist/ the way a bundler would: assets get a content
// hash in their name (so they can be cached forever), pages are HTML with
// the deploy environment (PUBLIC_ENV) baked in. Node's standard library only.

import { createHash } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const src = join(root, "src");
const dist = join(root, "dist");

const environment = process.env.PUBLIC_ENV || "development";

const escapeHtml = (text) =>
  text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function fingerprint(name, extension) {
  const content = await readFile(join(src, `${name}.${extension}`));
  const hash = createHash("sha256").update(content).digest("hex").slice(0, 8);
  const path = `assets/${name}.${hash}.${extension}`;
  await write(path, content);
  return `/${path}`;
}

async function write(path, content) {
  const target = join(dist, path);
  await mkdir(dirname(target), { recursive: true });
  await writeFile(target, content);
  console.log(`wrote dist/${path}`);
}

await rm(dist, { recursive: true, force: true });
const css = await fingerprint("app", "css");
const js = await fingerprint("app", "js");
const layout = await readFile(join(src, "layout.html"), "utf8");

const pages = [
  { path: "index.html", title: "Home", body: "index.html" },
  { path: "about/index.html", title: "About", body: "about.html" },
  { path: "404.html", title: "Not found", body: "404.html" },
];
for (const page of pages) {
  const body = await readFile(join(src, page.body), "utf8");
  // Replacement functions, not strings: a string would give "$&" and
  // friends a meaning.
  const html = layout
    .replaceAll("{{title}}", () => escapeHtml(page.title))
    .replaceAll("{{environment}}", () => escapeHtml(environment))
    .replaceAll("{{css}}", () => css)
    .replaceAll("{{js}}", () => js)
    .replace("{{body}}", () => body);
  await write(page.path, html);
}
console.log(`built ${pages.length} pages for ${environment}`);

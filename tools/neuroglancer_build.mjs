// Bundle neuroglancer's npm package (ES modules, no prebuilt client) into a static web app.
//
//   node neuroglancer_build.mjs OUT_DIR      (run in a folder where `neuroglancer` and
//                                             `esbuild` are installed: neuroglancer_bundle.py)
//
// The package's three entry points become three ES-module bundles side by side, because the
// code starts its workers with `new URL("./chunk_worker.bundle.js", import.meta.url)` and
// `new URL("../async_computation.bundle.js", import.meta.url)`: served from the site's root,
// both resolve to files next to main.bundle.js. The WebAssembly decoders it fetches the same
// way are copied beside them. Icons are imported as `*.svg?raw` (a bundler convention), read
// here as text. The icon set is pinned to a git commit that the npm registry does not have;
// its release on npm (installed instead) lacks three of the icons neuroglancer uses, drawn
// here with the nearest icon that it has (only the buttons' pictures differ).
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";

const out = process.argv[2];
if (!out) {
  console.error("usage: node neuroglancer_build.mjs OUT_DIR");
  process.exit(2);
}
// The installed package's sources (its exports map hides package.json from require.resolve).
const lib = join(process.cwd(), "node_modules", "neuroglancer", "lib");

const ICONS = {
  "ikonate/icons/controls-alt.svg": "ikonate/icons/controls.svg",
  "ikonate/icons/layers.svg": "ikonate/icons/stack.svg",
  "ikonate/icons/code-alt.svg": "ikonate/icons/edit.svg",
};

const raw = {
  name: "raw",
  setup(b) {
    b.onResolve({ filter: /\?raw$/ }, async (args) => {
      const path = args.path.slice(0, -4);
      const found = await b.resolve(ICONS[path] ?? path, {
        kind: args.kind,
        resolveDir: args.resolveDir,
      });
      return { path: found.path, namespace: "raw", errors: found.errors };
    });
    b.onLoad({ filter: /.*/, namespace: "raw" }, async (args) => ({
      contents: readFileSync(args.path, "utf8"),
      loader: "text",
    }));
  },
};

mkdirSync(out, { recursive: true });
await build({
  entryPoints: ["main", "chunk_worker", "async_computation"].map((n) =>
    join(lib, `${n}.bundle.js`),
  ),
  outdir: out,
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: false,
  plugins: [raw],
  loader: { ".wasm": "file", ".svg": "text" },
  logLevel: "warning",
});

function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith(".wasm")) copyFileSync(path, join(out, basename(path)));
  }
}
walk(lib);
writeFileSync(
  join(out, "index.html"),
  '<!doctype html><html><head><meta charset="utf-8"><title>neuroglancer</title>' +
    '<link rel="stylesheet" href="main.bundle.css">' +
    '<script type="module" src="main.bundle.js"></script></head><body></body></html>\n',
);

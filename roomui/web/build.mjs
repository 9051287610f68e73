// Builds the file browser into ../assets (or the folder given as the
// first argument), the files package roomui embeds: app.js (src/main.js
// and tus-js-client, bundled and minified), app.css, icon.svg. The same
// sources and lock file give the same bytes: no source map, no banner
// with a date, no absolute path.
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, "..", "assets"));
await mkdir(out, { recursive: true });

const common = {
  absWorkingDir: here,
  bundle: true,
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  charset: "utf8",
  logLevel: "warning",
  target: ["chrome111", "firefox113", "safari16.4"],
};
await build({
  ...common,
  entryPoints: ["src/main.js"],
  outfile: join(out, "app.js"),
  format: "iife",
  platform: "browser",
  define: { "process.env.NODE_ENV": '"production"' },
});
await build({ ...common, entryPoints: ["src/app.css"], outfile: join(out, "app.css") });
await copyFile(join(here, "src", "icon.svg"), join(out, "icon.svg"));

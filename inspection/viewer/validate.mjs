// Validate glTF/GLB files with the Khronos glTF-Validator (npm `gltf-validator`) and print each
// file's report as one JSON line: `node validate.mjs FILE [FILE...]`. Exit code 0 when no file has
// an error, 1 when one has, 2 when a file cannot be read or is not glTF at all.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { validateBytes, version } from 'gltf-validator';

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node validate.mjs FILE.glb [FILE...]');
  process.exit(2);
}
let status = 0;
for (const file of files) {
  try {
    const bytes = new Uint8Array(await readFile(file));
    const report = await validateBytes(bytes, {
      uri: basename(file),
      maxIssues: 200,
      externalResourceFunction: (uri) => Promise.reject(`external resource ${uri}: a GLB export must be self-contained`),
    });
    report.file = file;
    report.validatorVersion = version();
    console.log(JSON.stringify(report));
    if (report.issues.numErrors > 0) status = Math.max(status, 1);
  } catch (error) {
    console.log(JSON.stringify({ file, error: String(error) }));
    status = 2;
  }
}
process.exit(status);

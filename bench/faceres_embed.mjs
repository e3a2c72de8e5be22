// Embeds face crops with one of Human's TFJS graph models (faceres, faceres-deep) for
// bench/faceres_compare.py, which makes the crops and says how to set up the node folder.
//
//   node bench/faceres_embed.mjs NODE_DIR MODEL_JSON CROPS_U8 SIZE OUT_JSON
//
// NODE_DIR holds node_modules with @tensorflow/tfjs and @tensorflow/tfjs-backend-wasm (pure
// registry packages, no native download). CROPS_U8: N x SIZE x SIZE x 3 RGB bytes. OUT_JSON gets
// {"dim", "embeddings": [[...] x N], "cpu_ms", "wall_ms", "backend"}; only model-load excluded.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const [nodeDir, modelJson, cropsFile, sizeArg, outJson] = process.argv.slice(2);
if (!outJson) {
  console.error('usage: node faceres_embed.mjs NODE_DIR MODEL_JSON CROPS_U8 SIZE OUT_JSON');
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(nodeDir), 'package.json'));
const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm');

// Model artifacts from disk: Human's model.json plus its weight shards, no fetch.
function handler(file) {
  return {
    load: async () => {
      const m = JSON.parse(readFileSync(file, 'utf8'));
      const dir = path.dirname(file);
      const specs = [];
      const parts = [];
      for (const group of m.weightsManifest) {
        specs.push(...group.weights);
        for (const p of group.paths) parts.push(readFileSync(path.join(dir, p)));
      }
      const all = Buffer.concat(parts);
      return {
        modelTopology: m.modelTopology,
        format: m.format,
        generatedBy: m.generatedBy,
        convertedBy: m.convertedBy,
        weightSpecs: specs,
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
        signature: m.signature,
        userDefinedMetadata: m.userDefinedMetadata,
      };
    },
  };
}

async function main() {
  wasm.setWasmPaths(path.join(path.resolve(nodeDir), 'node_modules/@tensorflow/tfjs-backend-wasm/dist') + '/');
  wasm.setThreadsCount?.(1);
  await tf.setBackend('wasm');
  await tf.ready();
  const model = await tf.loadGraphModel(handler(modelJson));
  const size = Number(sizeArg);
  const bytes = readFileSync(cropsFile);
  const per = size * size * 3;
  const n = bytes.length / per;
  if (!Number.isInteger(n)) throw new Error(`${cropsFile}: ${bytes.length} bytes is not N x ${per}`);
  const out = [];
  const c0 = process.cpuUsage();
  const w0 = performance.now();
  for (let i = 0; i < n; i++) {
    const emb = tf.tidy(() => {
      const px = new Float32Array(bytes.subarray(i * per, (i + 1) * per));
      // Human feeds 0..255 RGB (its 0..1 face tensor times 255), no mean/std.
      const x = tf.tensor4d(px, [1, size, size, 3]);
      const res = model.execute(x);
      const outs = Array.isArray(res) ? res : [res];
      return outs.find((t) => t.shape[t.shape.length - 1] === 1024);
    });
    out.push(Array.from(await emb.data()));
    emb.dispose();
  }
  const cpu = process.cpuUsage(c0);
  writeFileSync(outJson, JSON.stringify({
    dim: out[0]?.length ?? 0,
    embeddings: out,
    cpu_ms: (cpu.user + cpu.system) / 1000,
    wall_ms: performance.now() - w0,
    backend: tf.getBackend(),
  }));
}

main().catch((e) => { console.error(e); process.exit(1); });

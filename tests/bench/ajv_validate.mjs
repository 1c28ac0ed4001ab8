// ajv, the reference for validation alone: compiles the same schemas once, parses the
// properties that bench_pipeline wrote ("name<TAB>properties-json" per event) beforehand, then
// times validating every event's properties, best of N. Prints the same BENCH / COUNTS lines as
// bench_pipeline so run_bench.sh can put them side by side.
//
//   node ajv_validate.mjs --schemas DIR --properties FILE [--repeat N] [--invalid-out FILE]

import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

// Resolved from the install directory run_bench.sh prepares (AJV_NODE_MODULES, the folder that
// holds node_modules), so node_modules never has to live next to this file in the source tree.
const require = createRequire(
  path.join(process.env.AJV_NODE_MODULES ?? path.dirname(new URL(import.meta.url).pathname), 'package.json'));
const Ajv = require('ajv').default;
const addFormats = require('ajv-formats').default;
const ajvVersion = require('ajv/package.json').version;
const formatsVersion = require('ajv-formats/package.json').version;

function parseArgs(argv) {
  const options = { repeat: 5 };
  for (let i = 2; i < argv.length; ++i) {
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`missing value after ${argv[i]}`);
      return argv[++i];
    };
    switch (argv[i]) {
      case '--schemas': options.schemas = value(); break;
      case '--properties': options.properties = value(); break;
      case '--repeat': options.repeat = Math.max(1, Number.parseInt(value(), 10)); break;
      case '--invalid-out': options.invalidOut = value(); break;
      default: throw new Error(`unknown option ${argv[i]}`);
    }
  }
  if (!options.schemas || !options.properties) throw new Error('--schemas and --properties are required');
  return options;
}

// Same layout and rule as SchemaRegistry::loadDirectory: <dir>/<percent-encoded event>/<version>.json,
// the highest integer version applies.
function loadSchemas(ajv, dir) {
  const validators = new Map();
  for (const entry of readdirSync(dir)) {
    const eventDir = path.join(dir, entry);
    if (!statSync(eventDir).isDirectory()) continue;
    const versions = readdirSync(eventDir)
      .map((file) => /^([1-9][0-9]*)\.json$/.exec(file))
      .filter(Boolean)
      .map((match) => Number(match[1]));
    if (versions.length === 0) continue;
    const latest = Math.max(...versions);
    const file = path.join(eventDir, `${latest}.json`);
    const schema = JSON.parse(readFileSync(file, 'utf8'));
    try {
      validators.set(decodeURIComponent(entry), ajv.compile(schema));
    } catch (error) {
      throw new Error(`${file}: ${error.message}`);
    }
  }
  return validators;
}

const options = parseArgs(process.argv);
// allErrors off: like isValid, stop at the first failure. strict off: the schemas are draft 7 as
// written by people (e.g. maxLength next to "type": ["string", "null"]), not ajv's strict dialect.
const ajv = new Ajv({ allErrors: false, strict: false });
addFormats(ajv);
const validators = loadSchemas(ajv, options.schemas);

// Untimed: parse every event's properties once, resolve its validator once.
const text = readFileSync(options.properties, 'utf8');
const propertiesBytes = Buffer.byteLength(text, 'utf8');
const instances = [];
const validatorOf = [];
let start = 0;
while (start < text.length) {
  let end = text.indexOf('\n', start);
  if (end < 0) end = text.length;
  if (end > start) {
    const tab = text.indexOf('\t', start);
    if (tab < 0 || tab > end) throw new Error(`line ${instances.length + 1}: no tab between name and properties`);
    validatorOf.push(validators.get(text.slice(start, tab)));
    instances.push(JSON.parse(text.slice(tab + 1, end)));
  }
  start = end + 1;
}
const events = instances.length;

let counts = null;
const verdicts = new Uint8Array(events);
function runOnce() {
  let valid = 0, invalid = 0, unplanned = 0;
  for (let i = 0; i < events; ++i) {
    const validate = validatorOf[i];
    if (validate === undefined) {
      ++unplanned;
      verdicts[i] = 3;
    } else if (validate(instances[i])) {
      ++valid;
      verdicts[i] = 1;
    } else {
      ++invalid;
      verdicts[i] = 2;
    }
  }
  return { valid, invalid, unplanned };
}

// Warm-up: V8 needs on the order of a million calls before the compiled validators run at full
// speed (measured: 5,000 events best of 1 is ~6x slower than best of 20). The reference must be
// ajv at its best, not a cold JIT, so keep warming until at least a million validations.
let warmupPasses = 0;
do {
  runOnce();
  ++warmupPasses;
} while (warmupPasses * events < 1_000_000);
let best = Infinity;
for (let r = 0; r < options.repeat; ++r) {
  const t0 = process.hrtime.bigint();
  counts = runOnce();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  best = Math.min(best, seconds);
}

if (options.invalidOut) {
  const lines = [];
  for (let i = 0; i < events; ++i) if (verdicts[i] === 2) lines.push(String(i + 1));
  writeFileSync(options.invalidOut, lines.length ? lines.join('\n') + '\n' : '');
}

const pad = (s, n) => s + ' '.repeat(Math.max(0, n - s.length));
console.log(`ajv_validate: ajv ${ajvVersion}, ajv-formats ${formatsVersion}, node ${process.version}, ` +
            `${validators.size} schemas, one thread, best of ${options.repeat} runs after ${warmupPasses} warm-up run(s)`);
console.log(`BENCH ${pad('ajv_validate', 16)} events=${events} best_s=${best.toFixed(6)} ` +
            `events_per_s=${Math.round(events / best)} mb_per_s=${(propertiesBytes / best / 1e6).toFixed(1)}` +
            `   # ajv validate() on pre-parsed properties`);
console.log(`COUNTS ${pad('ajv', 10)} valid=${counts.valid} invalid=${counts.invalid} unplanned=${counts.unplanned}`);

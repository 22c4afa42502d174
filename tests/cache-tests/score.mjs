// SPDX-License-Identifier: MIT
// Scores results of the HTTP caching test suite (npm http-cache-tests) with
// the suite's own rules: lib/display.mjs determineTestResult, dependencies
// honoured (a test whose dependency did not pass is "dependency_fail", not a
// pass, whatever its own result).
//
//   node score.mjs --suite DIR [--label L] [--report FILE] [--breakdown FILE]
//                  [--min-required N] [--min-optimal N] RESULTS.json
//   node score.mjs --suite DIR --published        (the results/*.json shipped
//                                                   in the package, one line each)
//
// Counting ("counted"): the suites of tests/index.mjs (not surrogate-control),
// tests neither browser_only nor browser_skip; kind required (or none): 144
// tests, kind optimal: 66. "all" counts every test the command-line client
// runs (not browser_only), surrogate-control and browser_skip included:
// 165 required, 95 optimal. Check tests ("kind: check") report behaviour, not
// conformance, and are not counted.
//
// Output: one summary line on stdout ("LABEL: required P/144 optimal P/66
// (all: required P/165 optimal P/95)"); with --report, one line per test:
// "RESULT<TAB>ID<TAB>KIND<TAB>SCOPE<TAB>SUITE<TAB>MESSAGE", RESULT one of
// pass, fail, optional_fail, dependency_fail (MESSAGE names the dependency),
// setup_fail, retry, harness_fail, untested, yes, no; SCOPE "counted" or
// "extra" (only in the "all" figures); with --breakdown, a Markdown table
// per suite file. Exit status 1 when a --min-* threshold is not reached.
import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const args = process.argv.slice(2)
const opt = { label: 'results' }
const files = []
for (let i = 0; i < args.length; i++) {
  const a = args[i]
  if (a === '--published') opt.published = true
  else if (a.startsWith('--')) {
    if (i + 1 >= args.length) { console.error(`score.mjs: ${a} needs a value`); process.exit(2) }
    opt[a.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = args[++i]
  } else files.push(a)
}
if (!opt.suite) { console.error('score.mjs: --suite DIR (the http-cache-tests package) is required'); process.exit(2) }
const suiteDir = path.resolve(opt.suite)
const load = async rel => (await import(pathToFileURL(path.join(suiteDir, rel)).href)).default
const indexSuites = await load('tests/index.mjs')
const surrogate = await load('tests/surrogate-control.mjs')
// display.mjs pulls browser-only assets (marked, liquid) at import time;
// node loads them fine, and its determineTestResult is the suite's rule.
const display = await import(pathToFileURL(path.join(suiteDir, 'lib/display.mjs')).href)
// determineTestResult looks dependencies up in the list it is given: give it
// every suite, as the command-line client ran them all.
const allSuites = [...indexSuites, surrogate]
const counted = new Set(indexSuites.map(s => s.id))

// determineTestResult answers with display symbols; the report uses words.
const names = {
  '✅': 'pass', '⛔️': 'fail', '⚠️': 'optional_fail', '⚪️': 'dependency_fail', '🔹': 'setup_fail',
  '⁉️': 'harness_fail', '↻': 'retry', '-': 'untested', Y: 'yes', N: 'no'
}

function score (results) {
  const s = { req: 0, reqPass: 0, opt: 0, optPass: 0, allReq: 0, allReqPass: 0, allOpt: 0, allOptPass: 0 }
  const lines = []
  const perSuite = []
  for (const suite of allSuites) {
    const row = { id: suite.id, name: suite.name, req: 0, reqPass: 0, opt: 0, optPass: 0 }
    for (const t of suite.tests) {
      if (t.browser_only) continue
      const kind = t.kind || 'required'
      const r = display.determineTestResult(allSuites, t.id, results)
      const result = names[r[2]] || r[2]
      const passed = result === 'pass'
      let message = ''
      const raw = results[t.id]
      if (result === 'dependency_fail') {
        const dep = t.depends_on.find(d =>
          !['✅', 'Y'].includes(display.determineTestResult(allSuites, d, results)[2]))
        message = `depends on ${dep}`
      } else if (Array.isArray(raw)) {
        message = `${raw[0]}: ${raw[1]}`
      }
      const scope = counted.has(suite.id) && !t.browser_skip ? 'counted' : 'extra'
      lines.push([result, t.id, kind, scope, suite.id, message.replace(/\s+/g, ' ')].join('\t'))
      if (kind === 'check') continue
      const isReq = kind === 'required'
      if (isReq) { s.allReq++; if (passed) s.allReqPass++ } else { s.allOpt++; if (passed) s.allOptPass++ }
      if (!counted.has(suite.id) || t.browser_skip) continue
      if (isReq) { s.req++; row.req++; if (passed) { s.reqPass++; row.reqPass++ } } else { s.opt++; row.opt++; if (passed) { s.optPass++; row.optPass++ } }
    }
    if (counted.has(suite.id)) perSuite.push(row)
  }
  return { s, lines, perSuite }
}

function summary (label, s) {
  return `${label}: required ${s.reqPass}/${s.req} optimal ${s.optPass}/${s.opt}` +
    ` (all: required ${s.allReqPass}/${s.allReq} optimal ${s.allOptPass}/${s.allOpt})`
}

if (opt.published) {
  const index = await load('results/index.mjs')
  for (const entry of index) {
    if (entry.type === 'browser') continue
    const results = JSON.parse(fs.readFileSync(path.join(suiteDir, 'results', entry.file)))
    console.log(summary(`${entry.name} ${entry.version} (${entry.type}, published)`, score(results).s))
  }
  process.exit(0)
}

if (files.length !== 1) { console.error('score.mjs: one results file expected'); process.exit(2) }
let results
try {
  results = JSON.parse(fs.readFileSync(files[0]))
} catch (e) {
  console.error(`score.mjs: ${files[0]}: ${e.message}`)
  process.exit(2)
}
const { s, lines, perSuite } = score(results)
if (opt.report) fs.writeFileSync(opt.report, lines.join('\n') + '\n')
if (opt.breakdown) {
  const md = ['| suite | required passed | optimal passed |', '|---|---|---|']
  for (const r of perSuite) md.push(`| ${r.name} (${r.id}) | ${r.reqPass}/${r.req} | ${r.optPass}/${r.opt} |`)
  md.push(`| **total** | **${s.reqPass}/${s.req}** | **${s.optPass}/${s.opt}** |`)
  fs.writeFileSync(opt.breakdown, md.join('\n') + '\n')
}
console.log(summary(opt.label, s))
let ok = true
if (opt.minRequired !== undefined && s.reqPass < Number(opt.minRequired)) {
  console.log(`FAIL: required ${s.reqPass} < threshold ${opt.minRequired}`)
  ok = false
}
if (opt.minOptimal !== undefined && s.optPass < Number(opt.minOptimal)) {
  console.log(`FAIL: optimal ${s.optPass} < threshold ${opt.minOptimal}`)
  ok = false
}
process.exit(ok ? 0 : 1)

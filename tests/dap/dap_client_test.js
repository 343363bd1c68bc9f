// Drives `execscope dap` over stdio with Microsoft's DAP test client on a recorded fixture
// (tests/dap/fixture_app.py). Run by tests/integration/test_dap.py, which records the fixture and sets:
// EXECSCOPE (the console script), STORE (chdb:///...), TRACE (the main process's trace), CHILD_TRACE,
// FILE (the recorded path of the fixture; edited on disk after recording). Exits non-zero on failure.
'use strict';
const assert = require('assert');
const { DebugClient } = require('@vscode/debugadapter-testsupport');

const { EXECSCOPE, STORE, TRACE, CHILD_TRACE, FILE } = process.env;
const TIMEOUT = 120000;

function client() {
  const dc = new DebugClient(EXECSCOPE, 'dap', 'execscope', { env: process.env }, true);
  dc.defaultTimeout = TIMEOUT;
  return dc;
}

// Registers for the stopped event before sending the request (events can arrive with the response).
async function act(dc, request) {
  const [event] = await Promise.all([dc.waitForEvent('stopped'), request()]);
  const stack = (await dc.stackTraceRequest({ threadId: event.body.threadId })).body.stackFrames;
  return { event, stack };
}

async function locals(dc, frameId) {
  const scopes = (await dc.scopesRequest({ frameId })).body.scopes;
  assert.strictEqual(scopes[0].name, 'Locals');
  const vars = (await dc.variablesRequest({ variablesReference: scopes[0].variablesReference })).body.variables;
  const out = {};
  for (const v of vars) out[v.name] = v.value;
  out.__ref = scopes[0].variablesReference;
  return out;
}

function where(stack) {
  return stack.map(f => `${f.name}:${f.line}`);
}

async function gotoLine(dc, line, index) {
  const targets = (await dc.gotoTargetsRequest({ source: { path: FILE }, line })).body.targets;
  return { targets, stop: await act(dc, () => dc.gotoRequest({ threadId: 1, targetId: targets[index].id })) };
}

async function main() {
  const dc = client();
  await dc.start();
  const logs = [];
  dc.on('output', e => { if (e.body.category === 'console') logs.push(e.body.output.trim()); });
  try {
    const init = await dc.initializeRequest({ adapterID: 'execscope', linesStartAt1: true, columnsStartAt1: true });
    for (const cap of ['supportsStepBack', 'supportsConfigurationDoneRequest', 'supportsConditionalBreakpoints',
      'supportsHitConditionalBreakpoints', 'supportsLogPoints', 'supportsFunctionBreakpoints',
      'supportsDataBreakpoints', 'supportsGotoTargetsRequest', 'supportsRestartFrame',
      'supportsExceptionInfoRequest', 'supportsEvaluateForHovers']) {
      assert.strictEqual(init.body[cap], true, cap);
    }
    assert.deepStrictEqual(init.body.exceptionBreakpointFilters.map(f => f.filter), ['raised', 'uncaught']);

    // 1. A conditional line breakpoint (and a log point on the way), continued to from the start.
    const initialized = dc.waitForEvent('initialized');
    await dc.launchRequest({ trace: TRACE, store: STORE });
    await initialized;
    const bps = await dc.setBreakpointsRequest({ source: { path: FILE }, breakpoints: [
      { line: 24, condition: 'n == 2' }, { line: 65, logMessage: 'acc={acc} i={i} sq={i * i}' }] });
    assert.deepStrictEqual(bps.body.breakpoints.map(b => b.verified), [true, true]);
    await dc.setExceptionBreakpointsRequest({ filters: [] });
    let s = await act(dc, () => dc.configurationDoneRequest());
    assert.strictEqual(s.event.body.reason, 'breakpoint');
    assert.deepStrictEqual(where(s.stack), ['shopfx.fact:24', 'shopfx.fact:24', 'shopfx.fact:24', 'shopfx.main:66',
      'shopfx:91']);
    assert.strictEqual(s.stack[0].source.path, FILE);
    let v = await locals(dc, s.stack[0].id);
    assert.strictEqual(v.n, '2');
    assert.strictEqual((await locals(dc, s.stack[1].id)).n, '3');
    assert.strictEqual((await locals(dc, s.stack[2].id)).n, '4');
    const mainVars = await locals(dc, s.stack[3].id);
    assert.strictEqual(mainVars.acc, '30');
    assert.strictEqual(mainVars.i, '4');
    assert.deepStrictEqual(logs, ['acc=0 i=0 sq=0', 'acc=0 i=1 sq=1', 'acc=1 i=2 sq=4', 'acc=5 i=3 sq=9',
      'acc=14 i=4 sq=16']);
    let ev = await dc.evaluateRequest({ expression: 'n * 10 + 1', frameId: s.stack[0].id, context: 'watch' });
    assert.strictEqual(ev.body.result, '21');

    // 2. Step in, then back across the call boundary; step out and over.
    s = await act(dc, () => dc.stepInRequest({ threadId: 1 }));
    assert.deepStrictEqual(where(s.stack).slice(0, 2), ['shopfx.fact:22', 'shopfx.fact:24']);
    assert.strictEqual((await locals(dc, s.stack[0].id)).n, '1');
    s = await act(dc, () => dc.stepBackRequest({ threadId: 1 }));
    assert.strictEqual(s.event.body.reason, 'step');
    assert.deepStrictEqual(where(s.stack), ['shopfx.fact:24', 'shopfx.fact:24', 'shopfx.fact:24', 'shopfx.main:66',
      'shopfx:91']);
    assert.strictEqual((await locals(dc, s.stack[0].id)).n, '2');
    s = await act(dc, () => dc.stepInRequest({ threadId: 1 }));
    s = await act(dc, () => dc.stepOutRequest({ threadId: 1 }));
    assert.strictEqual(s.stack[0].name, 'shopfx.fact');
    v = await locals(dc, s.stack[0].id);
    assert.strictEqual(v.n, '2');
    assert.strictEqual(v.r, '2');
    s = await act(dc, () => dc.nextRequest({ threadId: 1 }));
    assert.deepStrictEqual(where(s.stack).slice(0, 2), ['shopfx.fact:25', 'shopfx.fact:24']);

    // 3. Continue to hits of a loop-body breakpoint, then reverse-continue to the previous hit.
    await dc.setBreakpointsRequest({ source: { path: FILE }, breakpoints: [] });
    await dc.setBreakpointsRequest({ source: { path: FILE }, breakpoints: [{ line: 17, condition: 'p >= 10' }] });
    s = await act(dc, () => dc.continueRequest({ threadId: 1 }));
    assert.strictEqual(s.event.body.reason, 'breakpoint');
    assert.deepStrictEqual(where(s.stack), ['shopfx.Cart.total:17', 'shopfx.checkout:58', 'shopfx.main:71',
      'shopfx:91']);
    v = await locals(dc, s.stack[0].id);
    assert.deepStrictEqual([v.p, v.t], ['10', '0']);
    assert.match(v.self, /Cart object/);
    s = await act(dc, () => dc.continueRequest({ threadId: 1 }));
    v = await locals(dc, s.stack[0].id);
    assert.deepStrictEqual([v.p, v.t], ['20', '10']);
    s = await act(dc, () => dc.reverseContinueRequest({ threadId: 1 }));
    assert.strictEqual(s.event.body.reason, 'breakpoint');
    v = await locals(dc, s.stack[0].id);
    assert.deepStrictEqual([v.p, v.t], ['10', '0']);
    // hit condition: the third hit only
    await dc.setBreakpointsRequest({ source: { path: FILE }, breakpoints: [{ line: 17, hitCondition: '== 3' }] });
    await gotoLine(dc, 63, 0);
    s = await act(dc, () => dc.continueRequest({ threadId: 1 }));
    v = await locals(dc, s.stack[0].id);
    assert.deepStrictEqual([v.p, v.t], ['10', '0']);  // p=1, p=2, then p=10
    s = await act(dc, () => dc.continueRequest({ threadId: 1 }));
    assert.strictEqual(s.event.body.reason, 'entry');  // no further stop: the end of the recording

    // 4. A data breakpoint on t, run backwards to the writes that changed it.
    s = await gotoLine(dc, 17, 3).then(r => r.stop);  // 4th execution: p=20, t=10
    assert.strictEqual(s.event.body.reason, 'goto');
    v = await locals(dc, s.stack[0].id);
    assert.deepStrictEqual([v.p, v.t], ['20', '10']);
    await dc.setBreakpointsRequest({ source: { path: FILE }, breakpoints: [] });
    const info = await dc.dataBreakpointInfoRequest({ name: 't', variablesReference: v.__ref });
    assert.ok(info.body.dataId, 'dataId');
    const dbs = await dc.setDataBreakpointsRequest({ breakpoints: [{ dataId: info.body.dataId, accessType: 'write' }] });
    assert.strictEqual(dbs.body.breakpoints[0].verified, true);
    s = await act(dc, () => dc.reverseContinueRequest({ threadId: 1 }));
    assert.strictEqual(s.event.body.reason, 'data breakpoint');
    assert.strictEqual(s.stack[0].line, 17);
    v = await locals(dc, s.stack[0].id);
    assert.deepStrictEqual([v.p, v.t], ['10', '10']);
    s = await act(dc, () => dc.reverseContinueRequest({ threadId: 1 }));
    assert.strictEqual(s.event.body.reason, 'data breakpoint');
    assert.strictEqual(s.stack[0].line, 15);
    assert.strictEqual((await locals(dc, s.stack[0].id)).t, '0');
    s = await act(dc, () => dc.continueRequest({ threadId: 1 }));
    assert.strictEqual((await locals(dc, s.stack[0].id)).t, '10');
    s = await act(dc, () => dc.continueRequest({ threadId: 1 }));
    assert.strictEqual((await locals(dc, s.stack[0].id)).t, '30');
    await dc.setDataBreakpointsRequest({ breakpoints: [] });

    // 5. gotoTargets: every execution of a line.
    const jump = await gotoLine(dc, 17, 1);
    assert.strictEqual(jump.targets.length, 5);
    v = await locals(dc, jump.stop.stack[0].id);
    assert.deepStrictEqual([v.p, v.t], ['2', '1']);
    // restartFrame: back to the call's first line
    s = await act(dc, () => dc.restartFrameRequest({ frameId: jump.stop.stack[0].id }));
    assert.strictEqual(s.event.body.reason, 'restart');
    assert.strictEqual(s.stack[0].line, 15);
    assert.deepStrictEqual(Object.keys(await locals(dc, s.stack[0].id)).filter(k => k !== '__ref'), ['self']);

    // 6. Structural breakpoints: a call to Cart.total inside a loop; a raise inside an if.
    const fbs = await dc.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'call Cart.total in loop' },
      { name: 'raise in if' }] });
    assert.deepStrictEqual(fbs.body.breakpoints.map(b => b.verified), [true, true]);
    await gotoLine(dc, 63, 0);
    s = await act(dc, () => dc.continueRequest({ threadId: 1 }));
    assert.strictEqual(s.event.body.reason, 'function breakpoint');
    assert.deepStrictEqual(where(s.stack).slice(0, 2), ['shopfx.risky:37', 'shopfx.main:68']);
    assert.strictEqual((await locals(dc, s.stack[0].id)).x, '-1');
    s = await act(dc, () => dc.continueRequest({ threadId: 1 }));
    assert.strictEqual(s.event.body.reason, 'function breakpoint');
    assert.deepStrictEqual(where(s.stack).slice(0, 3), ['shopfx.Cart.total:14', 'shopfx.checkout:58',
      'shopfx.main:71']);
    s = await act(dc, () => dc.continueRequest({ threadId: 1 }));
    assert.deepStrictEqual(where(s.stack).slice(0, 2), ['shopfx.Cart.total:14', 'shopfx.checkout:58']);
    assert.strictEqual((await locals(dc, s.stack[1].id)).c, (await locals(dc, s.stack[0].id)).self);

    // 7. A data-flow breakpoint: where the value of acc written in the loop is used at line 85.
    await dc.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'flow main.acc -> 85' }] });
    await gotoLine(dc, 63, 0);
    s = await act(dc, () => dc.continueRequest({ threadId: 1 }));
    assert.strictEqual(s.event.body.reason, 'function breakpoint');
    assert.deepStrictEqual(where(s.stack), ['shopfx.main:85', 'shopfx:91']);
    ev = await dc.evaluateRequest({ expression: 'acc + f', frameId: s.stack[0].id, context: 'hover' });
    assert.strictEqual(ev.body.result, '54');
    ev = await dc.evaluateRequest({ expression: "config['sizes'][1:] + gen", frameId: s.stack[0].id });
    assert.strictEqual(ev.body.result, '[2, 3, 3, 2, 1]');
    ev = await dc.evaluateRequest({ expression: 'len(totals) == 2 and 60 in totals', frameId: s.stack[0].id });
    assert.strictEqual(ev.body.result, 'True');
    await assert.rejects(dc.evaluateRequest({ expression: "__import__('os').system('true')", frameId: s.stack[0].id }),
      /only calls of/);
    await assert.rejects(dc.evaluateRequest({ expression: 'missing + 1', frameId: s.stack[0].id }), /not recorded/);
    await dc.setFunctionBreakpointsRequest({ breakpoints: [] });

    // 8. Exceptions: a caught one (raised filter), then the uncaught one.
    await dc.setExceptionBreakpointsRequest({ filters: ['raised'] });
    await gotoLine(dc, 63, 0);
    s = await act(dc, () => dc.continueRequest({ threadId: 1 }));
    assert.strictEqual(s.event.body.reason, 'exception');
    assert.strictEqual(s.stack[0].name, 'shopfx.risky');
    let ex = await dc.exceptionInfoRequest({ threadId: 1 });
    assert.strictEqual(ex.body.exceptionId, 'ValueError');  // recorded where its own frame caught it
    await dc.setExceptionBreakpointsRequest({ filters: ['uncaught'] });
    s = await act(dc, () => dc.continueRequest({ threadId: 1 }));
    assert.strictEqual(s.event.body.reason, 'exception');
    assert.deepStrictEqual(where(s.stack), ['shopfx:93']);
    ex = await dc.exceptionInfoRequest({ threadId: 1 });
    assert.strictEqual(ex.body.exceptionId, 'RuntimeError');
    assert.strictEqual(ex.body.description, 'uncaught at the end');
    assert.strictEqual(ex.body.breakMode, 'unhandled');
    await dc.setExceptionBreakpointsRequest({ filters: [] });

    // 9. The generator: each value it yields.
    await dc.setBreakpointsRequest({ source: { path: FILE }, breakpoints: [{ line: 30 }] });
    await gotoLine(dc, 63, 0);
    for (const n of ['3', '2', '1']) {
      s = await act(dc, () => dc.continueRequest({ threadId: 1 }));
      assert.deepStrictEqual(where(s.stack), ['shopfx.countdown:30', 'shopfx.main:67', 'shopfx:91']);
      assert.strictEqual((await locals(dc, s.stack[0].id)).n, n);
    }

    // 10. Two threads: a breakpoint inside one worker; each thread's own stack.
    await dc.setBreakpointsRequest({ source: { path: FILE }, breakpoints: [{ line: 51, condition: 'k == 4 and i == 3' }] });
    s = await act(dc, () => dc.continueRequest({ threadId: 1 }));
    const threads = (await dc.threadsRequest()).body.threads;
    assert.deepStrictEqual(threads.map(t => t.name), ['main', 'thread shopfx.worker', 'thread shopfx.worker']);
    assert.notStrictEqual(s.event.body.threadId, 1);
    assert.deepStrictEqual(where(s.stack), ['shopfx.worker:51']);
    v = await locals(dc, s.stack[0].id);
    assert.deepStrictEqual([v.k, v.i, v.s], ['4', '3', '3']);
    assert.ok(['[]', '[3]'].includes(v.out), `out as the call saw it: ${v.out}`);  // the other worker may be first
    const mainStack = (await dc.stackTraceRequest({ threadId: 1 })).body.stackFrames;
    assert.deepStrictEqual(mainStack.map(f => f.name), ['shopfx.main', 'shopfx']);
    assert.ok([76, 77, 78].includes(mainStack[0].line), `main at ${mainStack[0].line}`);

    // 11. The file changed on disk after recording: the recorded text comes through `source`.
    const src = s.stack[0].source;
    assert.ok(src.sourceReference > 0, 'sourceReference for an edited file');
    const text = (await dc.sourceRequest({ source: src, sourceReference: src.sourceReference })).body.content;
    assert.ok(text.includes('def fact(n):') && !text.includes('# edited after recording'));

    // 12. Bad input: an unknown request fails and the session goes on.
    await assert.rejects(dc.customRequest('noSuchRequest', {}), /unknown request/);
    assert.strictEqual((await dc.threadsRequest()).body.threads.length, 3);
  } finally {
    const adapter = dc._adapterProcess;  // the embedded store has one owner: wait for this adapter to exit
    const exited = adapter && adapter.exitCode === null ? new Promise(r => adapter.once('exit', r)) : null;
    await dc.stop();
    if (exited) await exited;
  }

  // 13. The child process's recording (main() again, then fact(2): the second call with n == 1 is
  // under fact(2)); an unknown trace is a clear error on launch.
  const child = client();
  await child.start();
  try {
    await child.initializeRequest({ adapterID: 'execscope' });
    await assert.rejects(child.launchRequest({ trace: '0123456789abcdef0123456789abcdef', store: STORE }),
      /no recorded frames/);
    const initialized = child.waitForEvent('initialized');
    await child.launchRequest({ trace: CHILD_TRACE, store: STORE });
    await initialized;
    await child.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'fact', condition: 'n == 1', hitCondition: '2' }] });
    const s = await act(child, () => child.configurationDoneRequest());
    assert.strictEqual(s.event.body.reason, 'function breakpoint');
    assert.deepStrictEqual(where(s.stack).map(w => w.split(':')[0]), ['shopfx.fact', 'shopfx.fact', 'shopfx.main']);
    assert.strictEqual((await locals(child, s.stack[0].id)).n, '1');
    assert.strictEqual((await locals(child, s.stack[1].id)).n, '2');
  } finally {
    await child.stop();
  }
  console.log('execscope dap: all checks passed');
}

main().catch(err => { console.error(err && err.stack || err); process.exit(1); });

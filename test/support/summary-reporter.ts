import type { Reporter, TestModule } from 'vitest/node';

/** Ends the run with one plain line, `N passed, N failed, N skipped`, that any CI can read. */
export default class SummaryReporter implements Reporter {
  private counts = { passed: 0, failed: 0, skipped: 0 };

  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const counts = this.counts;
    for (const module of modules) {
      // A file whose setup failed (a beforeAll that threw) reports its tests as skipped:
      // they did not pass, and the line must not say they were merely skipped.
      const fileFailed = module.state() === 'failed';
      let counted = 0;
      for (const test of module.children.allTests()) {
        counted++;
        const state = test.result().state;
        if (state === 'passed') counts.passed++;
        else if (state === 'failed' || fileFailed) counts.failed++;
        else counts.skipped++;
      }
      if (fileFailed && counted === 0) counts.failed++;
    }
  }

  // Runs after the default reporter's summary, so the plain line is the last one.
  onFinished(): void {
    const { passed, failed, skipped } = this.counts;
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}

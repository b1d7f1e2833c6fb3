/** Where before-run.ts compiles src/ once per run; not under .tap/, whose files tap leaves out of the coverage report. */
export const CLI_BUILD = '.cli-build'
/** The start of the run (before-run.ts), so after-run.ts reports this run's failures only. */
export const RUN_STARTED = '.tap/run-started'

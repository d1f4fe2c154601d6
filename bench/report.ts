// Prints the Markdown report of a results file again: tsx bench/report.ts [bench/results/latest.json]
import { readFile } from 'node:fs/promises';
import { markdownReport, type Results } from './lib/report.js';

const file = process.argv[2] ?? new URL('./results/latest.json', import.meta.url);
const results = JSON.parse(await readFile(file, 'utf8')) as Results;
process.stdout.write(markdownReport(results));

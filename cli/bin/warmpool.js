#!/usr/bin/env node
// The `warmpool` command: compiled by `npm run build` into cli/dist.
import '../dist/src/main.js';

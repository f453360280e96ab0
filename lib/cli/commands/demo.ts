import type { Command } from '../command.js';

// Placeholder until issue 5 lands.
export const demoCommand: Command | undefined = undefined;

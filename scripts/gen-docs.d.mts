// Types of scripts/gen-docs.mjs, for test/docs/generated-docs.test.ts.
export declare const CLI_DOC: string;
export declare const API_DOC: string;
export declare function renderCliDoc(cli: {
  commands: readonly { name: string; summary: string; help: string }[];
  main: (args: string[], context: never) => Promise<number>;
}): Promise<string>;
export declare function renderApiDoc(root?: string): string;

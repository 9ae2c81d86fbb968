/** Minimal typings for qlobber 8 (the package ships none): only what the core uses. */
declare module 'qlobber' {
  export interface QlobberOptions {
    separator?: string;
    wildcard_one?: string;
    wildcard_some?: string;
    match_empty_levels?: boolean;
  }
  export class Qlobber<V = unknown> {
    constructor(options?: QlobberOptions);
    add(topic: string, val: V): this;
    remove(topic: string, val?: V): this;
    match(topic: string): V[];
    clear(): this;
  }
  const qlobber: { Qlobber: typeof Qlobber };
  export default qlobber;
}

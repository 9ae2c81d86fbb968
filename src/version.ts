/** The version a node reports to its cluster and on the health page (package.json's). */
export const THINGAUTH_VERSION = '0.1.0';

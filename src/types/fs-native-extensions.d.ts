/** The part of fs-native-extensions (holepunchto) that src/data-dir-lock.ts uses; it ships no types. */
declare module 'fs-native-extensions' {
  /**
   * An open-file-description lock (Linux F_OFD_SETLK, flock elsewhere) on the whole file:
   * true when granted, false when another descriptor holds it. Released when the descriptor is
   * closed or the process dies (SIGKILL included).
   */
  export function tryLock(fd: number, options?: { shared?: boolean }): boolean;
  export function unlock(fd: number): void;
}

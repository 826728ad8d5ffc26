// The local config file source (ztunnel's LocalClient with LOCAL_XDS_PATH), plus what ztunnel lacks: reload on
// change. The first load must succeed (the CLI exits with the error); afterwards a bad edit is logged and
// refused, and the running config stays in force until a good one arrives.

import { EventEmitter } from "node:events";
import fs from "node:fs";
import path from "node:path";
import { type MeshConfig } from "../model/index.js";
import { ConfigError, parseMeshConfig } from "./local-format.js";
import { logger } from "../log.js";
import type { ProxyStateUpdater } from "../state/index.js";

const log = logger("config");

export interface LocalConfigSourceOptions {
  /** Quiet time after the last change event before reloading (editors write in bursts). Default 100 ms. */
  debounceMs?: number;
}

/**
 * Emits "reloaded" (MeshConfig) after a changed file was applied and "rejected" (ConfigError) when a changed
 * file was refused.
 */
export class LocalConfigSource extends EventEmitter {
  private readonly file: string;
  private readonly debounceMs: number;
  private watcher: fs.FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The text last applied or rejected: events that leave the file as it was change nothing. */
  private lastText: string | undefined;

  constructor(
    file: string,
    private readonly updater: ProxyStateUpdater,
    opts: LocalConfigSourceOptions = {},
  ) {
    super();
    this.file = path.resolve(file);
    this.debounceMs = opts.debounceMs ?? 100;
  }

  /** Reads, parses and applies the file. Throws ConfigError (unreadable file included). */
  load(): MeshConfig {
    const text = this.read();
    const cfg = parseMeshConfig(text, this.file);
    this.lastText = text;
    this.updater.apply(cfg);
    log.info("config loaded", { file: this.file, ...counts(cfg) });
    return cfg;
  }

  /**
   * Watches the file's directory, not the file: editors and Kubernetes ConfigMap mounts replace the file (rename,
   * `..data` symlink swap), which ends a watch on the old inode.
   */
  watch(): void {
    if (this.watcher) return;
    const base = path.basename(this.file);
    this.watcher = fs.watch(path.dirname(this.file), { persistent: false }, (_event, name) => {
      if (name === null || name === base || name.startsWith("..")) this.schedule();
    });
    this.watcher.on("error", (err) => log.warn("config watch failed", { file: this.file, error: err }));
    // A change between load() and watch() would otherwise go unseen.
    this.schedule();
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.reload(), this.debounceMs);
    this.timer.unref();
  }

  private reload(): void {
    this.timer = undefined;
    let text: string;
    try {
      text = fs.readFileSync(this.file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") {
        // Deleted, or caught mid-replace (then the rename's own event brings the new text).
        log.warn("config file is gone; keeping the running config", { file: this.file });
        return;
      }
      this.reject(new ConfigError(`cannot read: ${(e as Error).message}`, { file: this.file }));
      return;
    }
    if (text === this.lastText) return;
    this.lastText = text;
    let cfg: MeshConfig;
    try {
      // An in-place rewrite can be caught between truncate and write; an empty mesh is never taken from that.
      if (text.trim() === "") {
        throw new ConfigError("empty file (write `workloads: []` to clear the config)", { file: this.file });
      }
      cfg = parseMeshConfig(text, this.file);
    } catch (e) {
      // Anything else is a parser bug; it must still not take down the running config.
      this.reject(e instanceof ConfigError ? e : new ConfigError(String(e), { file: this.file }));
      return;
    }
    this.updater.apply(cfg);
    log.info("config reloaded", { file: this.file, ...counts(cfg) });
    this.emit("reloaded", cfg);
  }

  private reject(err: ConfigError): void {
    log.warn("config change rejected; keeping the running config", {
      file: err.file,
      line: err.line,
      column: err.column,
      field: err.field,
      error: err.message,
    });
    this.emit("rejected", err);
  }

  private read(): string {
    try {
      return fs.readFileSync(this.file, "utf8");
    } catch (e) {
      throw new ConfigError(`cannot read: ${(e as Error).message}`, { file: this.file });
    }
  }
}

function counts(cfg: MeshConfig): Record<string, number> {
  return { workloads: cfg.workloads.length, services: cfg.services.length, policies: cfg.policies.length };
}

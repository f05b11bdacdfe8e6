/** What the conflux-api config node offers conflux-rest-api and conflux-api-endpoint. */
import type { Node } from 'node-red';
import type { ApiOperation } from '../core/api/operation';

export interface ApiConfigNode extends Node {
  /** The base path, as configured (`/api`). */
  readonly base: string;
  /** Whether maintenance mode is on. */
  readonly maintenance: boolean;
  /** Set when the configuration is unusable: its reason. */
  readonly problem?: string;
  /** Serves user's operations under the base path; throws when one clashes with another node's. */
  serve(user: Node, operations: readonly ApiOperation[]): void;
  /** Stops serving user's operations (on its close). */
  unserve(user: Node): void;
}

/** The standalone runtime's file modes: see nodes/core/db/owner-only.ts. */
export { OWNER_ONLY_UMASK, ownerOnlyTree } from '../nodes/core/db/owner-only';

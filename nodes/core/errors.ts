/**
 * The one error type every codec throws: it names the format, and where it can, the record
 * index and the field, so an integrator reading a Catch node's output knows what to fix.
 */
export class CodecError extends Error {
  override readonly name = 'CodecError';

  constructor(
    readonly format: string,
    readonly reason: string,
    readonly index?: number,
    readonly field?: string,
  ) {
    super(`${format}: ${index === undefined ? '' : `record ${index}: `}${field === undefined ? '' : `field "${field}": `}${reason}`);
  }
}

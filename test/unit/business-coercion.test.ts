import * as assert from 'node:assert/strict';
import * as vm from 'node:vm';
import { isPlainObject } from '../../nodes/core/stores/business-coercion';

describe('business store: what counts as a plain object', () => {
  it("takes an object made by a function node (another vm context), as it takes this realm's", () => {
    assert.ok(isPlainObject({ url: 'https://x.example' }));
    assert.ok(isPlainObject(Object.create(null)));
    assert.ok(isPlainObject(vm.runInNewContext('({ url: "https://x.example" })')));
  });

  it('refuses arrays, dates, maps and class instances, from any context', () => {
    for (const value of [[], new Date(), new Map(), new (class Row {})(), vm.runInNewContext('new Date()'), vm.runInNewContext('[]'), null, 'text']) {
      assert.equal(isPlainObject(value), false, String(value));
    }
  });
});

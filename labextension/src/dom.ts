/**
 * Building DOM nodes. Text from tasks and the user's data only ever goes in as textContent,
 * never as HTML.
 */

/** A new `tag` element with `text` as its text and `cls` as its class. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, cls?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (text !== undefined) {
    node.textContent = text;
  }
  if (cls) {
    node.className = cls;
  }
  return node;
}

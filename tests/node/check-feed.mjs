// A second, independent reader of our feeds: a strict XML check, then a real feed parser.
// Usage: node check-feed.mjs FILE...   Prints one JSON summary per file; exits 1 on the first bad one.
import { readFileSync } from "node:fs";
import { XMLValidator } from "fast-xml-parser";
import { parseFeed } from "@rowanmanning/feed-parser";

const summaries = [];
for (const path of process.argv.slice(2)) {
  const text = readFileSync(path, "utf8");
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    console.error(`${path}: not well-formed XML: ${JSON.stringify(valid.err)}`);
    process.exit(1);
  }
  let feed;
  try {
    feed = parseFeed(text);
  } catch (error) {
    console.error(`${path}: the feed parser refused it: ${error.message}`);
    process.exit(1);
  }
  const date = (value) => (value instanceof Date ? value.toISOString() : null);
  summaries.push({
    path,
    title: feed.title,
    url: feed.url,
    self: feed.self,
    updated: date(feed.updated),
    items: feed.items.map((item) => ({
      id: item.id,
      title: item.title,
      url: item.url,
      published: date(item.published),
      updated: date(item.updated),
      authors: item.authors.map((author) => author.name),
      categories: item.categories.map((category) => category.term || category.label),
    })),
  });
}
console.log(JSON.stringify(summaries));

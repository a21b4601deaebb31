// Runs the built client (dist/) against a live service; prints one JSON object of what it got.
// Used by tests/integration/test_recommender_http.py:
//   SOCIALPLAY_URL=http://127.0.0.1:8000 SOCIALPLAY_API_KEY=... node test/live.mjs
import { ROUTES, SocialPlayClient, SocialPlayError } from "../dist/index.js";

const baseUrl = process.env.SOCIALPLAY_URL;
const apiKey = process.env.SOCIALPLAY_API_KEY;
if (!baseUrl || !apiKey) {
  console.error("set SOCIALPLAY_URL and SOCIALPLAY_API_KEY");
  process.exit(2);
}
const ai = new SocialPlayClient({ baseUrl, apiKey, timeoutMs: 60_000 });
const now = new Date().toISOString();
const out = { routes: Object.keys(ROUTES).length };

async function failure(call) {
  try {
    await call();
    return null;
  } catch (error) {
    if (!(error instanceof SocialPlayError)) throw error;
    const { name, status, code, field, retryAfterS } = error;
    return { name, status, code, field, retryAfterS, message: error.message };
  }
}

out.health = await ai.health();
out.moderation = await ai.moderateText({ text: "have a lovely day, the park looks great" });
out.posts = await ai.sendPostEvents({
  posts: [
    { post_id: "ts-1", author_id: "ts-a", text: "fresh pasta with basil and tomatoes", created_at: now },
    { post_id: "ts-2", author_id: "ts-a", text: "my spaghetti carbonara recipe with garlic", created_at: now },
    { post_id: "ts-3", author_id: "ts-a", text: "the football match went to penalties", created_at: now },
  ],
});
out.interactions = await ai.sendInteractionEvents({
  interactions: [
    { event_id: "ts-like-1", user_id: "ts-user", post_id: "ts-1", type: "like", timestamp: now },
  ],
});
out.feed = await ai.rankFeed({ user_id: "ts-user", candidate_post_ids: ["ts-3", "ts-2"], limit: 2 });
out.badInput = await failure(() => ai.moderateText({ text: "" }));
out.badKey = await failure(() =>
  new SocialPlayClient({ baseUrl, apiKey: "not-a-key" }).moderateText({ text: "hello" }),
);
out.unreachable = await failure(() =>
  new SocialPlayClient({ baseUrl: "http://127.0.0.1:9", apiKey, timeoutMs: 5_000 }).health(),
);
console.log(JSON.stringify(out));

// Compile-time checks of the generated types (`make client` runs tsc on this file): a wrong
// field or a missing one must not compile.
import { SocialPlayClient, type Schemas } from "../src/index.js";

const ai = new SocialPlayClient({ baseUrl: "http://localhost:8000", apiKey: "key" });

export async function typed(): Promise<void> {
  const result: Schemas["ModerationResult"] = await ai.moderateText({ text: "hello" });
  const action: string = result.action;
  // @ts-expect-error a misspelt field is not a TextRequest
  await ai.moderateText({ txt: "hello" });
  // @ts-expect-error user_id is required to rank a feed
  await ai.rankFeed({ candidate_post_ids: ["p1"] });
  void action;
}

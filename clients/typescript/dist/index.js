/** An answer other than 2xx, with the service's error body when it sent one. */
export class SocialPlayError extends Error {
    /** HTTP status (0: no answer: network error or timeout). */
    status;
    /** The service's machine-readable code, e.g. "invalid_field", "unauthorized". */
    code;
    /** The offending request field, when the service named one. */
    field;
    /** Seconds to wait before retrying (429, 503), from Retry-After. */
    retryAfterS;
    /** The X-Request-ID of the call, for the service's logs. */
    requestId;
    constructor(status, code, message, field = null, retryAfterS = null, requestId = null) {
        super(message);
        this.name = "SocialPlayError";
        this.status = status;
        this.code = code;
        this.field = field;
        this.retryAfterS = retryAfterS;
        this.requestId = requestId;
    }
}
const DEFAULT_TIMEOUT_MS = 30_000;
function isErrorBody(value) {
    if (typeof value !== "object" || value === null || !("error" in value))
        return false;
    const detail = value.error;
    return typeof detail === "object" && detail !== null && "code" in detail && "message" in detail;
}
/** The SocialPlay AI API: one method per route. */
export class SocialPlayClient {
    baseUrl;
    #apiKey;
    #timeoutMs;
    #fetch;
    constructor(options) {
        if (!options.baseUrl)
            throw new TypeError("baseUrl is required, e.g. http://localhost:8000");
        if (!options.apiKey)
            throw new TypeError("apiKey is required (the service's X-API-Key)");
        this.baseUrl = options.baseUrl.replace(/\/+$/, "");
        this.#apiKey = options.apiKey;
        this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
        this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    }
    async #call(method, path, body, query) {
        const url = new URL(this.baseUrl + path);
        for (const [name, value] of Object.entries(query ?? {})) {
            if (value !== undefined && value !== null)
                url.searchParams.set(name, String(value));
        }
        const headers = { "X-API-Key": this.#apiKey, Accept: "application/json" };
        if (body !== undefined)
            headers["Content-Type"] = "application/json";
        let response;
        try {
            response = await this.#fetch(url, {
                method,
                headers,
                body: body === undefined ? undefined : JSON.stringify(body),
                signal: AbortSignal.timeout(this.#timeoutMs),
            });
        }
        catch (error) {
            const reason = error instanceof Error ? error.message : String(error);
            throw new SocialPlayError(0, "network_error", `${method} ${path}: ${reason}`);
        }
        const text = await response.text();
        let parsed = undefined;
        try {
            parsed = text ? JSON.parse(text) : undefined;
        }
        catch {
            parsed = undefined;
        }
        if (response.ok)
            return parsed;
        const retryAfter = response.headers.get("retry-after");
        const retryAfterS = retryAfter !== null && retryAfter !== "" ? Number(retryAfter) : null;
        const requestId = response.headers.get("x-request-id");
        if (isErrorBody(parsed)) {
            const { code, message, field } = parsed.error;
            throw new SocialPlayError(response.status, code, message, field ?? null, retryAfterS, requestId);
        }
        throw new SocialPlayError(response.status, `http_${response.status}`, `${method} ${path} answered ${response.status}${text ? `: ${text.slice(0, 200)}` : ""}`, null, retryAfterS, requestId);
    }
    // ---- health -------------------------------------------------------------------------------
    /** GET /health: ok or degraded (no API key needed). */
    health() {
        return this.#call("GET", "/health");
    }
    /** GET /api/v1/health: every node's model, device and state (operator keys). */
    healthDetail() {
        return this.#call("GET", "/api/v1/health");
    }
    // ---- moderation and sentiment -------------------------------------------------------------
    /** POST /api/v1/moderation/text */
    moderateText(body) {
        return this.#call("POST", "/api/v1/moderation/text", body);
    }
    /** POST /api/v1/moderation/batch */
    moderateBatch(body) {
        return this.#call("POST", "/api/v1/moderation/batch", body);
    }
    /** POST /api/v1/moderation/moderate: a post's text and images together. */
    moderatePost(body) {
        return this.#call("POST", "/api/v1/moderation/moderate", body);
    }
    /** POST /api/v1/sentiment/analyze */
    analyzeSentiment(body) {
        return this.#call("POST", "/api/v1/sentiment/analyze", body);
    }
    /** POST /api/v1/sentiment/aspects */
    aspectSentiment(body) {
        return this.#call("POST", "/api/v1/sentiment/aspects", body);
    }
    /** POST /api/v1/sentiment/batch */
    analyzeSentimentBatch(body) {
        return this.#call("POST", "/api/v1/sentiment/batch", body);
    }
    // ---- images (JSON: image_url or image_base64) --------------------------------------------
    /** POST /api/v1/moderation/image */
    moderateImage(body) {
        return this.#call("POST", "/api/v1/moderation/image", body);
    }
    /** POST /api/v1/image/tags */
    tagImage(body) {
        return this.#call("POST", "/api/v1/image/tags", body);
    }
    /** POST /api/v1/image/objects */
    detectObjects(body) {
        return this.#call("POST", "/api/v1/image/objects", body);
    }
    // ---- events and recommendations -----------------------------------------------------------
    /** POST /api/v1/events/posts: new or edited posts. */
    sendPostEvents(body) {
        return this.#call("POST", "/api/v1/events/posts", body);
    }
    /** POST /api/v1/events/interactions: views, likes, comments, shares, hides, reports. */
    sendInteractionEvents(body) {
        return this.#call("POST", "/api/v1/events/interactions", body);
    }
    /** POST /api/v1/recommendations/feed: rank candidate posts for a user. */
    rankFeed(body) {
        return this.#call("POST", "/api/v1/recommendations/feed", body);
    }
    /** POST /api/v1/recommendations/similar-posts/{post_id} */
    similarPosts(postId, query = {}) {
        const path = `/api/v1/recommendations/similar-posts/${encodeURIComponent(postId)}`;
        return this.#call("POST", path, undefined, query);
    }
    /** GET /api/v1/users/{user_id}/interests */
    userInterests(userId, query = {}) {
        const path = `/api/v1/users/${encodeURIComponent(userId)}/interests`;
        return this.#call("GET", path, undefined, query);
    }
    // ---- trends and replies -------------------------------------------------------------------
    /** GET /api/v1/trends */
    trends(query = {}) {
        return this.#call("GET", "/api/v1/trends", undefined, query);
    }
    /** GET /api/v1/sentiment/topics/{topic} */
    topicSentiment(topic, query = {}) {
        const path = `/api/v1/sentiment/topics/${encodeURIComponent(topic)}`;
        return this.#call("GET", path, undefined, query);
    }
    /** POST /api/v1/replies/suggest */
    suggestReplies(body) {
        return this.#call("POST", "/api/v1/replies/suggest", body);
    }
    // ---- moderation review (moderator keys) and experiments -----------------------------------
    /** GET /api/v1/moderation/decisions/{decision_id} */
    getDecision(decisionId) {
        const path = `/api/v1/moderation/decisions/${encodeURIComponent(decisionId)}`;
        return this.#call("GET", path);
    }
    /** POST /api/v1/moderation/{decision_id}/review */
    reviewDecision(decisionId, body) {
        const path = `/api/v1/moderation/${encodeURIComponent(decisionId)}/review`;
        return this.#call("POST", path, body);
    }
    /** GET /api/v1/experiments */
    listExperiments() {
        return this.#call("GET", "/api/v1/experiments");
    }
    /** GET /api/v1/experiments/{name} */
    getExperiment(name) {
        return this.#call("GET", `/api/v1/experiments/${encodeURIComponent(name)}`);
    }
}
/**
 * Every route of the OpenAPI document and the client method that calls it: a test checks
 * that the two lists match, so a new route cannot be forgotten here.
 */
export const ROUTES = {
    "GET /health": "health",
    "GET /api/v1/health": "healthDetail",
    "POST /api/v1/moderation/text": "moderateText",
    "POST /api/v1/moderation/batch": "moderateBatch",
    "POST /api/v1/moderation/moderate": "moderatePost",
    "POST /api/v1/sentiment/analyze": "analyzeSentiment",
    "POST /api/v1/sentiment/batch": "analyzeSentimentBatch",
    "POST /api/v1/sentiment/aspects": "aspectSentiment",
    "POST /api/v1/moderation/image": "moderateImage",
    "POST /api/v1/image/tags": "tagImage",
    "POST /api/v1/image/objects": "detectObjects",
    "POST /api/v1/events/posts": "sendPostEvents",
    "POST /api/v1/events/interactions": "sendInteractionEvents",
    "POST /api/v1/recommendations/feed": "rankFeed",
    "POST /api/v1/recommendations/similar-posts/{post_id}": "similarPosts",
    "GET /api/v1/users/{user_id}/interests": "userInterests",
    "GET /api/v1/trends": "trends",
    "GET /api/v1/sentiment/topics/{topic}": "topicSentiment",
    "POST /api/v1/replies/suggest": "suggestReplies",
    "GET /api/v1/moderation/decisions/{decision_id}": "getDecision",
    "POST /api/v1/moderation/{decision_id}/review": "reviewDecision",
    "GET /api/v1/experiments": "listExperiments",
    "GET /api/v1/experiments/{name}": "getExperiment",
};

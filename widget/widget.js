/*!
 * signoff widget: an embeddable chat with confirmation cards.
 *
 *   <script src="https://host/widget.js" data-site="shop" async></script>
 *
 * Plain ES2020, no build step, no dependencies. Everything lives in one IIFE and one
 * `state` object. The UI sits in an open shadow root under <div id="signoff-root"> so
 * host-page CSS cannot leak in. Server and user data only ever reach the DOM through
 * textContent / setAttribute, never through HTML parsing, and a card's values show their
 * control, bidi and invisible characters as escapes (see visible()).
 */
(function () {
  "use strict";

  // A second copy of the script (e.g. included twice) must not start a second widget.
  if (window.Signoff && window.Signoff.__signoff) return;

  const VERSION = "1.0.0";

  // --- Where we were loaded from -------------------------------------------------------
  // currentScript is only set while the script first runs, so capture it right away.

  function findOwnScript() {
    const current = document.currentScript;
    if (current && current.src) return current;
    const scripts = document.querySelectorAll("script[src]");
    for (let i = scripts.length - 1; i >= 0; i--) {
      if (/widget\.js([?#]|$)/.test(scripts[i].src)) return scripts[i];
    }
    return null;
  }

  // widget.css and the socket, ws, sit next to widget.js: under the path signoff is
  // served at, /chat/ws for /chat/widget.js when the host app mounts it at /chat.
  function deriveUrls(script) {
    const src = new URL(script ? script.src : "/widget.js", location.href);
    const css = new URL("widget.css", src);
    css.search = src.search; // a version in the script's query busts the style's cache too
    const ws = new URL("ws", src);
    ws.protocol = src.protocol === "https:" ? "wss:" : "ws:";
    return { css: css.href, ws: ws.href };
  }

  // The server puts widget.css here (signoff/web/widget_files.py); a copy of widget.js
  // served as it is on disk links widget.css instead.
  const STYLESHEET = /* widget.css */ null;

  const SCRIPT = findOwnScript();
  const URLS = deriveUrls(SCRIPT);

  // --- Tunables -------------------------------------------------------------------------

  const PING_INTERVAL_MS = 25000;
  const DEAD_SOCKET_MS = 60000; // no frame at all for this long: assume the socket is dead
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  // Fallback for "history replay finished": the server always replays the frame whose seq
  // equals welcome.seq, so this only fires if that frame is lost; be patient.
  const REPLAY_IDLE_MS = 3000;
  const WELCOME_TIMEOUT_MS = 15000; // a socket that has not said welcome by then is stuck
  const STABLE_SOCKET_MS = 10000; // the backoff resets only once a socket stayed up this long
  const OUTBOX_GAP_MS = 250; // pace re-sent messages under the server's 5 frames/s refill
  const RATE_LIMIT_RETRY_MS = 1000;
  const CONNECTING_HINT_DELAY_MS = 800; // don't flash "Connecting…" on fast first connects
  const CSS_REVEAL_TIMEOUT_MS = 4000;
  const MAX_TEXT = 4000;
  const MAX_FRAME_BYTES = 64 * 1024; // the server's limit on a frame (core/frames.py)
  const MAX_NOTICES = 3;
  const NEAR_BOTTOM_PX = 80;
  // The panel takes the whole screen here (keep in sync with the media query in widget.css).
  const FULL_SCREEN_QUERY = "(max-width: 519.98px), (max-height: 500px)";

  // Errors that, answering a hello that carried a stored session token, mean "that
  // session is gone": start a fresh one on the same socket.
  const SESSION_ERRORS = new Set(["unauthorized", "expired", "forbidden"]);
  // Card statuses that are still on the way to an outcome after a decision was accepted.
  const IN_PROGRESS = new Set(["pending", "waiting", "approved", "running"]);
  // Card statuses nothing can change any more.
  const FINAL = new Set(["done", "failed", "interrupted", "cancelled", "rejected", "expired"]);
  // Decision errors that leave the card pending, so the visitor may try again.
  const RETRYABLE_DECISION_ERRORS = new Set(["hash_mismatch", "rate_limited", "unavailable"]);
  // Errors after which a message is offered again a little later, not marked failed.
  const RETRY_LATER_ERRORS = new Set(["rate_limited", "unavailable"]);
  // What a snapshot may hold: the frames that draw messages and cards.
  const SNAPSHOT_TYPES = new Set(["message", "message.start", "message.delta", "message.end", "card", "card.update"]);

  // --- Strings --------------------------------------------------------------------------
  // Every visible (or screen-reader) string. `strings` in the options overrides single
  // keys; `{name}` placeholders are filled in by t().

  const STRINGS = {
    en: {
      title: "Chat",
      openChat: "Open chat",
      closeChat: "Close chat",
      hideChat: "Hide chat",
      placeholder: "Type a message…",
      inputLabel: "Message",
      send: "Send",
      you: "You:",
      bot: "Assistant:",
      confirm: "Confirm",
      confirmAll: "Confirm all",
      cancel: "Not now",
      "cancel.destructive": "Keep it",
      "kind.write": "Needs your OK",
      "kind.destructive": "Can't be undone",
      "status.withdrawn": "Withdrawn — you sent a new message",
      withdraw: "Withdraw request",
      sayWhy: "Say why",
      why: "Why not? The assistant reads this",
      "status.waiting": "Waiting for a teammate",
      "status.running": "Running…",
      "status.done": "Done",
      doneOne: "1 action completed",
      doneMany: "{count} actions completed",
      "status.failed": "Failed",
      "status.cancelled": "Cancelled",
      "status.rejected": "Rejected by a teammate",
      "status.expired": "Expired",
      "status.interrupted": "Interrupted — outcome unknown",
      "result.done": "Done",
      "result.failed": "Failed",
      "result.skipped": "Skipped",
      connecting: "Connecting…",
      reconnecting: "Reconnecting…",
      unavailable: "Chat is unavailable right now.",
      sessionEnded: "This conversation has ended",
      suggestions: "Things to try",
      startedOver: "This chat started over: the earlier conversation is no longer available.",
      newConversation: "Start a new conversation",
      notDelivered: "Not delivered",
      dismiss: "Dismiss",
      "error.bad_frame": "Something went wrong. Please try again.",
      "error.unauthorized": "Your session could not be verified.",
      "error.forbidden": "You are not allowed to do that.",
      "error.not_found": "This item no longer exists.",
      "error.expired": "This has expired.",
      "error.already_decided": "Already decided",
      "error.hash_mismatch": "This request changed. Please review it and try again.",
      "error.rate_limited": "Too many requests. Please wait a moment and try again.",
      "error.unavailable": "The service is briefly unavailable. Trying again shortly.",
      "error.too_large": "That message is too long.",
      "error.generic": "Something went wrong.",
    },
    de: {
      title: "Chat",
      openChat: "Chat öffnen",
      closeChat: "Chat schließen",
      hideChat: "Chat ausblenden",
      placeholder: "Nachricht schreiben…",
      inputLabel: "Nachricht",
      send: "Senden",
      you: "Sie:",
      bot: "Assistent:",
      confirm: "Bestätigen",
      confirmAll: "Alle bestätigen",
      cancel: "Nicht jetzt",
      "cancel.destructive": "Behalten",
      "kind.write": "Braucht Ihre Zustimmung",
      "kind.destructive": "Nicht rückgängig zu machen",
      "status.withdrawn": "Zurückgezogen – Sie haben eine neue Nachricht geschickt",
      withdraw: "Anfrage zurückziehen",
      sayWhy: "Grund angeben",
      why: "Warum nicht? Der Assistent liest das",
      "status.waiting": "Wartet auf ein Teammitglied",
      "status.running": "Wird ausgeführt…",
      "status.done": "Erledigt",
      doneOne: "1 Aktion ausgeführt",
      doneMany: "{count} Aktionen ausgeführt",
      "status.failed": "Fehlgeschlagen",
      "status.cancelled": "Abgebrochen",
      "status.rejected": "Von einem Teammitglied abgelehnt",
      "status.expired": "Abgelaufen",
      "status.interrupted": "Unterbrochen – Ergebnis unbekannt",
      "result.done": "Erledigt",
      "result.failed": "Fehlgeschlagen",
      "result.skipped": "Übersprungen",
      connecting: "Verbindung wird hergestellt…",
      reconnecting: "Verbindung wird wiederhergestellt…",
      unavailable: "Der Chat ist gerade nicht verfügbar.",
      sessionEnded: "Dieses Gespräch ist beendet",
      suggestions: "Zum Ausprobieren",
      startedOver: "Der Chat hat neu begonnen: das frühere Gespräch ist nicht mehr verfügbar.",
      newConversation: "Neues Gespräch beginnen",
      notDelivered: "Nicht zugestellt",
      dismiss: "Schließen",
      "error.bad_frame": "Etwas ist schiefgelaufen. Bitte versuchen Sie es erneut.",
      "error.unauthorized": "Ihre Sitzung konnte nicht bestätigt werden.",
      "error.forbidden": "Das ist nicht erlaubt.",
      "error.not_found": "Dieser Eintrag existiert nicht mehr.",
      "error.expired": "Das ist abgelaufen.",
      "error.already_decided": "Bereits entschieden",
      "error.hash_mismatch": "Die Anfrage hat sich geändert. Bitte prüfen Sie sie erneut.",
      "error.rate_limited": "Zu viele Anfragen. Bitte warten Sie einen Moment.",
      "error.unavailable": "Der Dienst ist kurz nicht erreichbar. Neuer Versuch in Kürze.",
      "error.too_large": "Diese Nachricht ist zu lang.",
      "error.generic": "Etwas ist schiefgelaufen.",
    },
  };

  // --- State ----------------------------------------------------------------------------

  const state = {
    options: {
      site: null,
      userToken: null,
      locale: null,
      theme: {},
      strings: {},
      onApprovalRequest: null,
      open: false,
    },
    strings: STRINGS.en,
    started: false,
    ui: null, // DOM references once mounted
    panelOpen: false,
    focusOnReveal: false, // open() asked for focus before the stylesheet had loaded
    listeners: new Map(), // event name -> Set of callbacks

    // Connection
    ws: null,
    socketSeq: 0, // bumps per socket, so we know on which socket something was sent
    welcomed: false, // a welcome arrived on the current socket
    helloHadToken: false,
    attempts: 0, // reconnect attempts since the last welcome
    reconnectTimer: 0,
    welcomeTimer: 0,
    stableTimer: 0,
    pingTimer: 0,
    connectingTimer: 0,
    lastFrameAt: 0,
    site: {}, // the site's welcome settings: greeting, suggestions, bot_name, bot_avatar
    avatarFailed: false, // the bot_avatar did not load on this page: its letter stands in
    lastStamp: null, // the time shown under the log's last stamped message
    refused: false, // a setup mistake (see refuse()): never reconnect on our own
    refusal: null, // why: "origin not allowed", "unknown site", "user token", …
    ended: false, // session.end received: wait for the visitor to restart
    memoryToken: null, // used when localStorage is unavailable
    memorySessionId: null,
    userId: null, // user_id of the last welcome: who the current conversation belongs to

    // Session history
    sessionId: null,
    lastSeq: 0, // highest seq applied; sent as last_seq on reconnect
    welcomeSeq: 0, // seq in the last welcome: where the history replay catches up
    replaying: false,
    replayTimer: 0,
    messages: new Map(), // message_id -> message record
    cards: new Map(), // card_id -> card entry (insertion order = history order)
    cardElementCount: 0, // for unique element ids inside the shadow root
    outbox: [], // chat messages not yet confirmed by the server: {clientId, text, row, socket, retryAt, author?}
    pageCalls: new Map(), // Signoff.call()s by client_id: {frame, socket, resolve, reject, cardId}
    outboxTimer: 0, // paces the outbox flush
    scrollLock: null, // {overflow} of <html> saved while the full-screen panel is open
  };

  // --- Small helpers ---------------------------------------------------------------------

  function t(key, vars) {
    const template = key in state.strings ? state.strings[key] : key;
    if (!vars) return template;
    return template.replace(/\{(\w+)\}/g, (match, name) =>
      name in vars ? String(vars[name]) : match
    );
  }

  // createElement with attributes; `text` sets textContent. Never parses HTML.
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [key, value] of Object.entries(attrs)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === "class") node.className = value;
        else if (key === "text") node.textContent = value;
        else node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    for (const child of children) if (child) node.appendChild(child);
    return node;
  }

  const ICONS = {
    chat:
      "M21 11.5a8.4 8.4 0 0 1-.9 3.8 8.5 8.5 0 0 1-7.6 4.7 8.4 8.4 0 0 1-3.8-.9L3 21l1.9-5.7" +
      "a8.4 8.4 0 0 1-.9-3.8 8.5 8.5 0 0 1 4.7-7.6 8.4 8.4 0 0 1 3.8-.9h.5a8.5 8.5 0 0 1 8 8v.5z",
    close: "M18 6 6 18M6 6l12 12",
    send: "M22 2 11 13M22 2l-7 20-4-9-9-4 20-7z",
  };

  function icon(name) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", "signoff-icon signoff-icon-" + name);
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", ICONS[name]);
    svg.appendChild(path);
    return svg;
  }

  function newClientId() {
    const cryptoObj = window.crypto;
    if (cryptoObj && typeof cryptoObj.randomUUID === "function") return "c-" + cryptoObj.randomUUID();
    if (cryptoObj && cryptoObj.getRandomValues) {
      const bytes = cryptoObj.getRandomValues(new Uint8Array(16));
      return "c-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    }
    return "c-" + Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  // Characters a font draws as nothing or as something else (bidi controls, zero-width
  // characters, tags, line breaks...): shown as escapes wherever a card draws a value, so a
  // value cannot hide part of itself, run backwards or add lines to the card. The same
  // class as signoff.core.display.HIDDEN_CLASS; a test checks they are written alike.
  const HIDDEN = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/gu;
  const NEWLINE_SIGN = "↵";

  function visible(text) {
    return String(text).replace(HIDDEN, (char) =>
      char === "\n"
        ? NEWLINE_SIGN
        : "⟨U+" + char.codePointAt(0).toString(16).toUpperCase().padStart(4, "0") + "⟩"
    );
  }

  // A value as a card shows it: text as it is, anything else as JSON; hidden characters visible.
  function formatValue(value) {
    if (typeof value === "string") return visible(value);
    if (value === undefined) return "";
    try {
      return visible(JSON.stringify(value));
    } catch (err) {
      return visible(String(value));
    }
  }

  function clone(value) {
    return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
  }

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  // --- Events ---------------------------------------------------------------------------

  function on(event, fn) {
    if (typeof fn !== "function") throw new TypeError("Signoff.on: callback must be a function");
    if (!state.listeners.has(event)) state.listeners.set(event, new Set());
    const set = state.listeners.get(event);
    // Wrap so the same function can be subscribed twice and unsubscribed independently.
    const entry = (payload) => fn(payload);
    set.add(entry);
    return function unsubscribe() {
      set.delete(entry);
    };
  }

  function emit(event, payload) {
    const set = state.listeners.get(event);
    if (!set) return;
    for (const fn of Array.from(set)) {
      try {
        fn(payload);
      } catch (err) {
        console.error("[signoff] '" + event + "' listener failed:", err);
      }
    }
  }

  // --- Stored session token --------------------------------------------------------------
  // localStorage is shared by tabs of the same origin, so a reload or a second tab
  // resumes the same conversation. Some embeds (sandboxed iframes, strict privacy
  // modes) throw on access; fall back to memory for the life of the page.

  function tokenKey() {
    return "signoff:" + state.options.site + ":session";
  }

  // The session id is kept beside the token: a tab whose screen shows another session
  // than the stored one (another tab started afresh) must replay the stored one from 0.
  function loadStored(key, fallback) {
    try {
      return window.localStorage.getItem(key) || fallback;
    } catch (err) {
      return fallback;
    }
  }

  function loadToken() {
    return loadStored(tokenKey(), state.memoryToken);
  }

  function sessionIdKey() {
    return tokenKey() + "_id"; // signoff:<site>:session_id
  }

  function loadSessionId() {
    return loadStored(sessionIdKey(), state.memorySessionId);
  }

  // True if the stored token belongs to the session this tab shows (not one that another
  // tab has started since): only then may this tab drop it.
  function storedIsShown() {
    return Boolean(state.sessionId) && loadSessionId() === state.sessionId;
  }

  function storeToken(token, sessionId) {
    state.memoryToken = token;
    state.memorySessionId = sessionId;
    try {
      window.localStorage.setItem(tokenKey(), token);
      window.localStorage.setItem(sessionIdKey(), sessionId);
    } catch (err) {
      /* memory fallback already set */
    }
  }

  function clearToken() {
    state.memoryToken = null;
    state.memorySessionId = null;
    try {
      window.localStorage.removeItem(tokenKey());
      window.localStorage.removeItem(sessionIdKey());
    } catch (err) {
      /* nothing stored */
    }
  }

  // --- Options, strings, theme -----------------------------------------------------------

  function readDataAttributes(script) {
    const options = {};
    if (!script) return options;
    const ds = script.dataset;
    if (ds.site) options.site = ds.site;
    if (ds.userToken) options.userToken = ds.userToken;
    if (ds.locale) options.locale = ds.locale;
    if (ds.open !== undefined) options.open = ds.open === "true";
    return options;
  }

  function mergeOptions(options) {
    if (!isObject(options)) return;
    const target = state.options;
    if (typeof options.site === "string" && options.site) {
      if (state.started && options.site !== target.site) {
        console.warn("[signoff] site cannot change after start; ignoring", options.site);
      } else {
        target.site = options.site;
      }
    }
    if ("userToken" in options) target.userToken = options.userToken || null;
    if ("locale" in options) target.locale = options.locale || null;
    if (isObject(options.theme)) target.theme = Object.assign({}, target.theme, options.theme);
    if (isObject(options.strings)) target.strings = Object.assign({}, target.strings, options.strings);
    if ("onApprovalRequest" in options) {
      target.onApprovalRequest =
        typeof options.onApprovalRequest === "function" ? options.onApprovalRequest : null;
    }
    if ("open" in options) target.open = Boolean(options.open);
  }

  // Locale: the option, else the host page's <html lang>, else English. "de-DE" → "de".
  function resolveLocale() {
    const raw = String(state.options.locale || document.documentElement.lang || "en").toLowerCase();
    if (STRINGS[raw]) return raw;
    const base = raw.split(/[-_]/)[0];
    return STRINGS[base] ? base : "en";
  }

  function resolveStrings() {
    const custom = {};
    for (const [key, value] of Object.entries(state.options.strings || {})) {
      if (typeof value === "string") custom[key] = value;
    }
    state.strings = Object.assign({}, STRINGS.en, STRINGS[resolveLocale()], custom);
  }

  const THEME_PROPERTIES = {
    primary: "--signoff-primary",
    primaryText: "--signoff-on-primary",
    background: "--signoff-background",
    text: "--signoff-text",
    radius: "--signoff-radius",
    font: "--signoff-font",
  };

  // Which CSS property each theme value must be valid for. A custom property accepts any
  // text, so without this check `background: "url(https://…)"` would make the page fetch it.
  const THEME_SYNTAX = {
    primary: "color",
    primaryText: "color",
    background: "color",
    text: "color",
    radius: "border-radius",
    font: "font-family",
  };

  function themeValue(key, value) {
    if (value === null || value === undefined || value === "") return null;
    if (key === "radius" && typeof value === "number") value = value + "px";
    if (typeof value !== "string" && typeof value !== "number") return null;
    value = String(value);
    // No CSS.supports (very old engines): no way to check, so no theming.
    const valid = Boolean(window.CSS && CSS.supports) && CSS.supports(THEME_SYNTAX[key], value);
    if (!valid) {
      console.warn("[signoff] ignoring theme." + key + ":", value);
      return null;
    }
    return value;
  }

  // Theme values become CSS custom properties on the host; unset or invalid ones fall back
  // to the defaults in widget.css (which follow prefers-color-scheme).
  function applyTheme() {
    const host = state.ui.host;
    const theme = state.options.theme || {};
    for (const [key, property] of Object.entries(THEME_PROPERTIES)) {
      const value = themeValue(key, theme[key]);
      if (value === null) host.style.removeProperty(property);
      else host.style.setProperty(property, value);
    }
    host.setAttribute("data-position", theme.position === "left" ? "left" : "right");
  }

  // --- Mounting ---------------------------------------------------------------------------

  // A constructed stylesheet is not subject to the host page's style-src, so a strict CSP
  // needs no rule for signoff's styles. Returns the <link> to add when there is no other way.
  function styleWith(root, reveal) {
    if (STYLESHEET !== null && "adoptedStyleSheets" in root) {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLESHEET);
      root.adoptedStyleSheets = [sheet];
      setTimeout(reveal, 0);
      return null;
    }
    const link = h("link", { rel: "stylesheet", href: URLS.css });
    link.addEventListener("load", reveal);
    link.addEventListener("error", reveal);
    setTimeout(reveal, CSS_REVEAL_TIMEOUT_MS);
    return link;
  }

  function mount() {
    let host = document.getElementById("signoff-root");
    if (!host || host.shadowRoot) {
      // Our own element name: a page's `div { … }` rules never match it.
      host = h("signoff-chat", { id: "signoff-root" });
      // On <html>, not <body>: a transform or filter on body would become the containing
      // block of our position:fixed launcher and panel and move them.
      document.documentElement.appendChild(host);
    }
    // Shield the host element from page rules like `* { padding: 30px !important }`: an
    // important inline declaration beats the page's selectors, important ones included.
    // Custom properties (theming) are unaffected.
    host.style.setProperty("all", "initial", "important");
    const root = host.attachShadow({ mode: "open" });

    // Hide everything until our stylesheet arrives, so the page never shows an unstyled
    // widget. Set through CSSOM (not a <style> tag) to stay friendly to strict CSPs.
    const wrap = h("div", { class: "signoff-wrap", "data-open": "false" });
    wrap.style.display = "none";
    const reveal = () => {
      if (wrap.style.display !== "none") return;
      wrap.style.removeProperty("display");
      if (state.panelOpen) scrollToBottom();
      // A focus() on a display:none element is lost; do the one requested meanwhile.
      if (state.focusOnReveal && state.panelOpen) focusComposer();
      state.focusOnReveal = false;
    };
    const link = styleWith(root, reveal);

    const launcherDot = h("span", { class: "signoff-unread", "aria-hidden": "true" });
    const launcher = h(
      "button",
      {
        type: "button",
        class: "signoff-launcher",
        "aria-expanded": "false",
        "aria-controls": "signoff-panel",
        "aria-haspopup": "dialog",
      },
      icon("chat"),
      icon("close"),
      launcherDot
    );

    const title = h("h2", { class: "signoff-title", id: "signoff-title" });
    // The bot's picture: its name says who it is, so the picture is not read out.
    const avatar = h("span", { class: "signoff-avatar", "aria-hidden": "true", hidden: true });
    const closeButton = h("button", { type: "button", class: "signoff-close" }, icon("close"));
    const header = h("div", { class: "signoff-header" }, avatar, title, closeButton);

    const status = h("div", { class: "signoff-status", role: "status", hidden: true });
    const log = h("div", {
      class: "signoff-log",
      role: "log",
      "aria-live": "polite",
      tabindex: "0", // scrollable regions must be reachable by keyboard
    });
    const notices = h("div", { class: "signoff-notices" });

    const input = h("textarea", {
      class: "signoff-input",
      rows: "1",
      maxlength: String(MAX_TEXT),
      autocomplete: "off",
    });
    const sendButton = h("button", { type: "button", class: "signoff-send" }, icon("send"));
    const composer = h("div", { class: "signoff-composer" }, input, sendButton);

    const endedText = h("p", { class: "signoff-ended-text" });
    const restart = h("button", { type: "button", class: "signoff-restart" });
    const ended = h("div", { class: "signoff-ended", hidden: true }, endedText, restart);

    const panel = h(
      "div",
      {
        class: "signoff-panel",
        id: "signoff-panel",
        role: "dialog",
        "data-open": "false",
      },
      header,
      status,
      log,
      notices,
      composer,
      ended
    );

    wrap.append(launcher, panel);
    if (link) root.append(link);
    root.append(wrap);

    state.ui = {
      host, root, wrap, launcher, launcherDot, panel, avatar, title, closeButton, status, log,
      notices, input, sendButton, composer, ended, endedText, restart,
      statusKey: null, // which string the status line shows, for re-translation
    };

    launcher.addEventListener("click", () => setOpen(!state.panelOpen));
    closeButton.addEventListener("click", () => setOpen(false));
    wrap.addEventListener("keydown", onWrapKeydown);
    input.addEventListener("keydown", onInputKeydown);
    input.addEventListener("input", autosizeInput);
    sendButton.addEventListener("click", submitInput);
    restart.addEventListener("click", startNewConversation);

    renderStaticText();
    applyTheme();
  }

  // (Re)writes every fixed string; called on mount and whenever locale/strings change.
  function renderStaticText() {
    const ui = state.ui;
    ui.panel.setAttribute("lang", resolveLocale());
    ui.panel.setAttribute("aria-label", titleText());
    ui.title.textContent = titleText();
    renderAvatar();
    ui.closeButton.setAttribute("aria-label", t("closeChat"));
    ui.closeButton.setAttribute("title", t("closeChat"));
    ui.launcher.setAttribute("aria-label", state.panelOpen ? t("hideChat") : t("openChat"));
    ui.log.setAttribute("aria-label", titleText());
    ui.input.setAttribute("placeholder", t("placeholder"));
    ui.input.setAttribute("aria-label", t("inputLabel"));
    ui.sendButton.setAttribute("aria-label", t("send"));
    ui.sendButton.setAttribute("title", t("send"));
    ui.endedText.textContent = t("sessionEnded");
    ui.restart.textContent = t("newConversation");
    if (ui.statusKey) ui.status.textContent = t(ui.statusKey);
    for (const entry of state.cards.values()) {
      if (entry.el) {
        renderCardBody(entry);
        updateCardView(entry);
      }
    }
  }

  // --- Panel, input ------------------------------------------------------------------------

  function setOpen(open, opts) {
    const focus = !opts || opts.focus !== false;
    if (!state.ui) {
      state.options.open = open; // applied on mount
      return;
    }
    if (state.panelOpen === open) return;
    const ui = state.ui;
    state.panelOpen = open;
    ui.panel.setAttribute("data-open", String(open));
    ui.wrap.setAttribute("data-open", String(open));
    ui.launcher.setAttribute("aria-expanded", String(open));
    ui.launcher.setAttribute("aria-label", open ? t("hideChat") : t("openChat"));
    updateScrollLock();
    if (open) {
      setUnread(false);
      scrollToBottom();
      if (focus) {
        if (ui.wrap.style.display === "none") state.focusOnReveal = true;
        else focusComposer();
      }
      emit("open");
    } else {
      // Only pull focus back if it was inside the widget; a programmatic close must not
      // steal focus from wherever the visitor is on the host page.
      if (focus && ui.root.activeElement) ui.launcher.focus();
      emit("close");
    }
  }

  // While the panel covers a small screen, the page behind it must not scroll (on phones
  // a swipe that reaches the end of the log would scroll the page instead).
  let fullScreenQuery = null;

  function fullScreen() {
    return Boolean(window.matchMedia && window.matchMedia(FULL_SCREEN_QUERY).matches);
  }

  function updateScrollLock() {
    if (!fullScreenQuery && window.matchMedia) {
      fullScreenQuery = window.matchMedia(FULL_SCREEN_QUERY);
      // Rotating the phone or resizing the window can cross the breakpoint while open.
      fullScreenQuery.addEventListener("change", updateScrollLock);
    }
    const lock = state.panelOpen && Boolean(fullScreenQuery && fullScreenQuery.matches);
    const html = document.documentElement;
    if (lock && !state.scrollLock) {
      state.scrollLock = { overflow: html.style.overflow };
      html.style.overflow = "hidden";
    } else if (!lock && state.scrollLock) {
      html.style.overflow = state.scrollLock.overflow; // give the page back its own value
      state.scrollLock = null;
    }
  }

  function focusComposer() {
    const ui = state.ui;
    (state.ended ? ui.restart : ui.input).focus();
  }

  function setUnread(unread) {
    if (!state.ui) return;
    if (unread) state.ui.launcher.setAttribute("data-unread", "true");
    else state.ui.launcher.removeAttribute("data-unread");
  }

  function onWrapKeydown(event) {
    if (event.key === "Escape" && state.panelOpen) {
      event.stopPropagation();
      setOpen(false);
    }
  }

  function onInputKeydown(event) {
    // Enter sends, Shift+Enter is a newline; never interrupt an IME composition.
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    submitInput();
  }

  function autosizeInput() {
    const input = state.ui.input;
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 140) + "px";
  }

  function submitInput() {
    const ui = state.ui;
    const text = ui.input.value.trim();
    if (!text || state.ended || state.refused) return;
    if (!sendChat(text)) return; // too long: keep the text so the visitor can shorten it
    ui.input.value = "";
    autosizeInput();
    ui.input.focus();
  }

  // --- Log --------------------------------------------------------------------------------

  function isNearBottom() {
    const log = state.ui.log;
    return log.scrollHeight - log.scrollTop - log.clientHeight < NEAR_BOTTOM_PX;
  }

  function scrollToBottom() {
    const log = state.ui.log;
    log.scrollTop = log.scrollHeight;
  }

  // Undelivered messages stay at the end of the log; everything from the history goes in
  // before them, so a replay arriving after the visitor typed keeps the real order.
  function appendToLog(node, forceScroll) {
    const log = state.ui.log;
    const stick = forceScroll || isNearBottom();
    if (node.getAttribute("data-pending") === "true") {
      log.appendChild(node);
    } else {
      log.insertBefore(node, log.querySelector(':scope > [data-pending="true"]'));
    }
    if (stick) scrollToBottom();
  }

  function keepScrolled(update) {
    const stick = isNearBottom();
    update();
    if (stick) scrollToBottom();
  }

  // The site names its bot (welcome's bot_name) unless the page set its own strings.
  function ownString(key) {
    return isObject(state.options.strings) && key in state.options.strings;
  }

  function titleText() {
    return state.site.bot_name && !ownString("title") ? state.site.bot_name : t("title");
  }

  function botLabel() {
    return state.site.bot_name && !ownString("bot") ? state.site.bot_name + ":" : t("bot");
  }

  // The site's bot_avatar, else the first letter of its bot_name; nothing for neither.
  // A picture that does not load (a wrong URL, a page CSP without it in img-src) says so
  // once in the console and gives way to the letter.
  function renderAvatar() {
    const ui = state.ui;
    const src = state.site.bot_avatar && !state.avatarFailed ? state.site.bot_avatar : "";
    const letter = state.site.bot_name ? Array.from(state.site.bot_name)[0].toUpperCase() : "";
    const shown = src || letter;
    if (ui.avatar.dataset.shown === shown) return;
    ui.avatar.dataset.shown = shown;
    ui.avatar.hidden = !shown;
    ui.avatar.textContent = src ? "" : letter;
    if (!src) return;
    const img = h("img", { alt: "", src: src });
    img.addEventListener("error", () => {
      state.avatarFailed = true;
      console.error(
        "[signoff] the bot_avatar " + src + " did not load: check the URL, and that the " +
          "page's Content-Security-Policy allows it in img-src. Showing the bot name's " +
          "first letter instead."
      );
      renderAvatar();
    });
    ui.avatar.appendChild(img);
  }

  // A conversation with nothing in it yet opens with the site's greeting and messages to
  // try (one click sends one). Shown, never sent: the bot's conversation starts with the
  // visitor's first message.
  function showGreeting() {
    const ui = state.ui;
    if (!ui || state.ended || ui.log.querySelector(".signoff-row, .signoff-card, .signoff-greeting")) return;
    const greeting = typeof state.site.greeting === "string" ? state.site.greeting : "";
    const suggestions = Array.isArray(state.site.suggestions) ? state.site.suggestions.map(String) : [];
    if (!greeting && !suggestions.length) return;
    const block = h("div", { class: "signoff-greeting" });
    if (greeting) {
      const message = createMessage("bot", greeting, null);
      block.appendChild(message.row);
    }
    if (suggestions.length) {
      const list = h("div", { class: "signoff-suggestions", role: "group", "aria-label": t("suggestions") });
      for (const text of suggestions) {
        const button = h("button", { type: "button", class: "signoff-suggestion", text: text });
        button.addEventListener("click", () => {
          if (state.ended || state.refused) return;
          list.remove();
          sendChat(text);
          ui.input.focus();
        });
        list.appendChild(button);
      }
      block.appendChild(list);
    }
    ui.log.prepend(block);
  }

  function hideSuggestions() {
    const list = state.ui && state.ui.log.querySelector(".signoff-suggestions");
    if (list) list.remove();
  }

  function clearLog() {
    state.lastStamp = null;
    const ui = state.ui;
    if (!ui) return;
    ui.log.replaceChildren();
    for (const item of state.outbox) if (item.row) ui.log.appendChild(item.row);
  }

  // --- Messages ---------------------------------------------------------------------------

  function createMessage(role, text, messageId) {
    if (role === "user") hideSuggestions(); // the visitor has started, from any tab
    const row = h("div", { class: "signoff-row", "data-role": role });
    // Screen readers hear who spoke; the bubble's own text stays exactly the message.
    const speaker = h("span", { class: "signoff-sr", text: role === "user" ? t("you") : botLabel() });
    const textEl = h("span", { class: "signoff-msg-text", text: text });
    const bubble = h(
      "div",
      { class: "signoff-msg", "data-role": role, "data-message-id": messageId || null },
      textEl
    );
    row.append(speaker, bubble);
    return { row, bubble, textEl, text, typing: null, role };
  }

  function setTyping(message, typing) {
    if (typing && !message.typing) {
      message.typing = h(
        "span",
        { class: "signoff-typing", "aria-hidden": "true" },
        h("span"),
        h("span"),
        h("span")
      );
      message.bubble.appendChild(message.typing);
      message.bubble.setAttribute("aria-busy", "true");
    } else if (!typing && message.typing) {
      message.typing.remove();
      message.typing = null;
      message.bubble.removeAttribute("aria-busy");
    }
  }

  function renderHistoryMessage(role, text, messageId) {
    const message = createMessage(role, text, messageId);
    if (messageId) state.messages.set(messageId, message);
    if (state.ui) appendToLog(message.row);
    return message;
  }

  function renderPendingMessage(item) {
    const message = createMessage("user", item.text, null);
    message.row.setAttribute("data-pending", "true");
    message.bubble.setAttribute("data-client-id", item.clientId);
    item.message = message;
    item.row = message.row;
    appendToLog(message.row, true);
  }

  function markDelivered(item, frame) {
    const message = item.message;
    if (!message) {
      renderHistoryMessage("user", frame.text, frame.message_id);
      return;
    }
    message.row.removeAttribute("data-pending");
    if (frame.message_id) {
      message.bubble.setAttribute("data-message-id", frame.message_id);
      state.messages.set(frame.message_id, message);
    }
    if (typeof frame.text === "string" && frame.text !== message.text) {
      message.text = frame.text;
      message.textEl.textContent = frame.text;
    }
    placeDelivered(message.row);
  }

  // A delivered message belongs after the history and before the still-pending ones.
  // Usually it is already there; moving a node re-announces it in the live log, so move
  // it only when an earlier pending message is still ahead of it.
  function placeDelivered(row) {
    const firstPending = state.ui.log.querySelector(':scope > [data-pending="true"]');
    if (!firstPending) return;
    const pendingIsEarlier = row.compareDocumentPosition(firstPending) & Node.DOCUMENT_POSITION_PRECEDING;
    if (pendingIsEarlier) state.ui.log.insertBefore(row, firstPending);
  }

  function markFailed(item) {
    state.outbox = state.outbox.filter((other) => other !== item);
    if (!item.message) return;
    const row = item.message.row;
    row.removeAttribute("data-pending");
    row.setAttribute("data-failed", "true");
    row.appendChild(h("span", { class: "signoff-msg-meta", text: t("notDelivered") }));
    appendToLog(row);
  }

  // --- Outgoing chat messages --------------------------------------------------------------

  function canSend() {
    return Boolean(state.ws && state.ws.readyState === WebSocket.OPEN && state.welcomed);
  }

  function sendFrame(frame) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch (err) {
      return false;
    }
  }

  // Queues a chat message; returns its client_id, or null if it was refused. Text over the
  // server's limit is refused here: the server would answer too_large, and a frame over
  // 64 KiB closes the socket, which the outbox would re-send after every reconnect.
  function sendChat(text) {
    if ([...text].length > MAX_TEXT) {
      showNotice(t("error.too_large"));
      return null;
    }
    const item = { clientId: newClientId(), text: text, row: null, message: null, socket: 0, retryAt: 0 };
    hideSuggestions();
    state.outbox.push(item);
    if (state.ui) renderPendingMessage(item);
    flushOutbox();
    return item.clientId;
  }

  function sendOutboxItem(item) {
    const sent = sendFrame({ type: "message", client_id: item.clientId, text: item.text });
    if (sent) item.socket = state.socketSeq;
  }

  // Send whatever this socket has not carried yet, in order, one message per
  // OUTBOX_GAP_MS: after a reconnect a long queue must not trip the rate limit. Re-sending
  // a message the server already has is harmless: client_id makes it idempotent.
  function flushOutbox() {
    if (!state.outboxTimer) pumpOutbox();
  }

  function pumpOutbox() {
    state.outboxTimer = 0;
    if (!canSend()) return; // finishReplay flushes again once a socket is welcomed
    const next = state.outbox.find((item) => item.socket !== state.socketSeq);
    if (!next) return;
    const wait = next.retryAt - Date.now();
    if (wait > 0) {
      // Rate-limited earlier: wait for it rather than overtake it, to keep the order.
      state.outboxTimer = setTimeout(pumpOutbox, wait);
      return;
    }
    sendOutboxItem(next);
    state.outboxTimer = setTimeout(pumpOutbox, OUTBOX_GAP_MS);
  }

  // The server dropped this message (rate_limited): it is not lost, offer it again later.
  function retryLater(item) {
    item.socket = 0;
    item.retryAt = Date.now() + RATE_LIMIT_RETRY_MS;
    clearTimeout(state.outboxTimer);
    state.outboxTimer = 0;
    flushOutbox();
  }

  // --- Cards ------------------------------------------------------------------------------

  function cardEntry(cardId) {
    let entry = state.cards.get(cardId);
    if (!entry) {
      entry = {
        id: cardId,
        card: { card_id: cardId },
        known: false, // a full card frame has arrived (not just updates)
        el: null,
        ui: null,
        hidden: false, // the onApprovalRequest hook took it over
        hookAsked: false,
        deferred: false, // waiting for the replay to finish before asking the hook
        decision: null, // in-flight decision: {value, socket, resolve, reject, promise}
        locked: false, // a decision error that ends the visitor's say on this card
        error: "",
        errorCode: null,
      };
      state.cards.set(cardId, entry);
    }
    return entry;
  }

  function publicCard(entry) {
    return clone(entry.card);
  }

  function sessionEndedError(cardId) {
    return { type: "error", code: "expired", message: "The conversation has ended", ref: cardId };
  }

  // reason: why the visitor declines, for the assistant (a cancel only, up to 300 characters).
  function decide(cardId, value, reason) {
    if (value !== "confirm" && value !== "cancel") {
      return Promise.reject(new TypeError('decision must be "confirm" or "cancel"'));
    }
    if (reason !== undefined && (value !== "cancel" || typeof reason !== "string" || !reason.trim() || reason.length > 300)) {
      return Promise.reject(new TypeError("a reason goes with cancel only, as text of 1 to 300 characters"));
    }
    if (state.ended) return Promise.reject(sessionEndedError(cardId));
    const entry = state.cards.get(cardId);
    if (!entry || !entry.known) {
      return Promise.reject({ type: "error", code: "not_found", message: "Unknown card", ref: cardId });
    }
    // One decision in flight per card: double clicks and repeated calls send once.
    if (entry.decision) return entry.decision.promise;
    // Nothing to wait for: a frame would only earn already_decided from the server.
    if (!decidable(entry.card, value)) {
      const status = String(entry.card.status);
      return Promise.reject({ type: "error", code: "already_decided", message: "This card is " + status, ref: cardId });
    }
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    entry.decision = { value, reason: reason === undefined ? undefined : reason.trim(), socket: 0, resolve, reject, promise };
    clearCardError(entry);
    if (entry.el) updateCardView(entry);
    if (canSend()) sendDecision(entry);
    return promise;
  }

  // The visitor decides their own cards, and may withdraw one that waits for a teammate.
  function decidable(card, value) {
    return card.status === "pending" || (card.status === "waiting" && value === "cancel");
  }

  function clearCardError(entry) {
    entry.error = "";
    entry.errorCode = null;
  }

  function sendDecision(entry) {
    const sent = sendFrame({
      type: "decision",
      card_id: entry.id,
      decision: entry.decision.value,
      args_hash: entry.card.args_hash,
      reason: entry.decision.reason,
    });
    if (sent) entry.decision.socket = state.socketSeq;
  }

  // A decision sent on a socket that died may never have arrived. If the replay did not
  // bring the card past pending, send it again (the server's compare-and-set makes a
  // duplicate harmless), else the update already settled it.
  function flushDecisions() {
    for (const entry of state.cards.values()) {
      const decision = entry.decision;
      if (decision && decision.socket !== state.socketSeq && decidable(entry.card, decision.value)) {
        sendDecision(entry);
      }
    }
  }

  function settleDecision(entry, outcome, frame) {
    const decision = entry.decision;
    if (!decision) return;
    entry.decision = null;
    if (outcome === "resolve") decision.resolve(frame);
    else decision.reject(frame);
  }

  function onDecisionClick(event, entry, value) {
    // A script on the host page can click() our buttons; only the visitor may. Pages that
    // decide programmatically use onApprovalRequest's decide().
    if (!event.isTrusted) return;
    if (entry.decision || entry.locked || !decidable(entry.card, value)) return;
    // The default UI has nobody awaiting the promise; the card shows any error itself.
    const why = value === "cancel" && entry.ui ? entry.ui.why.value.trim() : "";
    decide(entry.id, value, why || undefined).catch(() => {});
  }

  // Asks the host's onApprovalRequest hook; true means the host draws the card itself.
  function askHook(entry) {
    const hook = state.options.onApprovalRequest;
    entry.hookAsked = true;
    if (!hook) return false;
    let handled = false;
    try {
      handled = hook(publicCard(entry), (decision, reason) => decide(entry.id, decision, reason)) === true;
    } catch (err) {
      console.error("[signoff] onApprovalRequest failed:", err);
    }
    if (handled) {
      entry.hidden = true;
      if (entry.el) entry.el.remove();
      entry.el = null;
      entry.ui = null;
    }
    return handled;
  }

  // During a history replay a card frame may say "pending" while a later frame of the
  // same replay closes it; only cards still pending once the replay is done are offered
  // to the hook. Their elements wait, hidden, in their history position.
  function runDeferredHooks() {
    for (const entry of state.cards.values()) {
      if (!entry.deferred) continue;
      entry.deferred = false;
      if (entry.card.status === "pending" && !entry.hookAsked && askHook(entry)) continue;
      if (entry.el) {
        entry.el.hidden = false;
        updateCardView(entry);
      }
    }
  }

  function ensureCardElement(entry) {
    if (entry.el || !state.ui) return;
    const badge = h("span", { class: "signoff-card-badge" });
    state.cardElementCount += 1;
    const title = h("div", { class: "signoff-card-title", id: "signoff-card-title-" + state.cardElementCount });
    const text = h("div", { class: "signoff-card-text" });
    const actions = h("div", { class: "signoff-card-actions" });
    const status = h("div", { class: "signoff-card-status" });
    const error = h("div", { class: "signoff-card-error", hidden: true });
    const confirm = h("button", { type: "button", class: "signoff-confirm" });
    const cancel = h("button", { type: "button", class: "signoff-cancel" });
    // Declining may say why, for the assistant: out of the way until asked for.
    const sayWhy = h("button", { type: "button", class: "signoff-say-why", "aria-expanded": "false" });
    const why = h("input", { type: "text", class: "signoff-why", maxlength: "300", hidden: true });
    const buttons = h("div", { class: "signoff-card-buttons" }, confirm, cancel, sayWhy, why);
    const el = h(
      "div",
      {
        class: "signoff-card",
        role: "group",
        "data-card-id": entry.id,
        "aria-labelledby": title.id,
        tabindex: "-1", // focusable from script only: takes focus when its buttons go
      },
      h("div", { class: "signoff-card-head" }, badge),
      title,
      text,
      actions,
      status,
      error
    );
    confirm.addEventListener("click", (event) => onDecisionClick(event, entry, "confirm"));
    cancel.addEventListener("click", (event) => onDecisionClick(event, entry, "cancel"));
    sayWhy.addEventListener("click", () => {
      why.hidden = false;
      sayWhy.hidden = true;
      sayWhy.setAttribute("aria-expanded", "true");
      why.focus();
    });
    why.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.isComposing) return;
      event.preventDefault();
      onDecisionClick(event, entry, "cancel");
    });
    entry.el = el;
    entry.ui = { badge, title, text, actions, status, error, buttons, confirm, cancel, sayWhy, why, actionEls: [] };
    appendToLog(el);
  }

  // Title, text and actions: what the card asks. Rebuilt when a card frame is re-pushed.
  function renderCardBody(entry) {
    const card = entry.card;
    const ui = entry.ui;
    const kind = card.kind === "destructive" ? "destructive" : "write";
    entry.el.setAttribute("data-kind", kind);
    ui.badge.textContent = t("kind." + kind);
    const actions = Array.isArray(card.actions) ? card.actions : [];
    const fallbackTitle = actions.length ? actions[0].title || actions[0].action || "" : "";
    ui.title.textContent = card.title || fallbackTitle;
    ui.text.textContent = card.text || "";
    ui.text.hidden = !card.text;
    // A single call whose line is the card's own text: the box shows its args only.
    const single = actions.length === 1 && actions[0].effect === card.text;
    ui.actionEls = actions.map((action) => renderAction(action, single));
    ui.actions.replaceChildren(...ui.actionEls.map((a) => a.el));
  }

  function renderAction(action, single) {
    action = isObject(action) ? action : {};
    const el = h("div", { class: "signoff-card-action", "data-action": action.action || null });
    if (!single) {
      el.appendChild(h("div", { class: "signoff-action-name", text: action.title || action.action || "" }));
    }
    // Each argument under its label, in words (the server's `fields`); the raw args only
    // from a server that does not send them.
    const fields = Array.isArray(action.fields)
      ? action.fields.filter(isObject).map((f) => [String(f.label), String(f.value)])
      : Object.entries(isObject(action.args) ? action.args : {}).map(([k, v]) => [visible(k), formatValue(v)]);
    if (fields.length) {
      const list = h("dl", { class: "signoff-args" });
      for (const [label, value] of fields) {
        list.appendChild(
          h(
            "div",
            { class: "signoff-arg" },
            h("dt", { text: label }),
            // dir=auto isolates the value: right-to-left text in it cannot move its neighbours.
            h("dd", { text: value, dir: "auto" })
          )
        );
      }
      el.appendChild(list);
    }
    if (action.effect && !single) {
      el.appendChild(h("div", { class: "signoff-effect", text: String(action.effect) }));
    }
    const result = h("div", { class: "signoff-action-result", hidden: true });
    el.appendChild(result);
    return { el, result, name: action.title || action.action || "" };
  }

  // Status, buttons, per-action results, error: what has happened to the card so far.
  function updateCardView(entry) {
    if (!entry.el) return;
    const card = entry.card;
    const ui = entry.ui;
    entry.el.setAttribute("data-status", card.status || "pending");

    const statusText = cardStatusText(entry);
    ui.status.textContent = statusText;
    ui.status.hidden = !statusText;

    renderResults(entry);

    ui.error.textContent = entry.error;
    ui.error.hidden = !entry.error;

    // The buttons exist only while the visitor has a say (pending, no final error, session
    // alive). While a decision is on its way they stay, aria-disabled rather than disabled:
    // a disabled button drops keyboard focus, and onDecisionClick already sends only once.
    const waiting = card.status === "waiting";
    const actionable = (card.status === "pending" || waiting) && !entry.locked && !state.ended;
    const busy = Boolean(entry.decision);
    const count = Array.isArray(card.actions) ? card.actions.length : 0;
    ui.confirm.textContent = card.confirm_label || (count > 1 ? t("confirmAll") : t("confirm"));
    // A request that waits for a teammate can only be taken back.
    ui.confirm.hidden = waiting;
    ui.cancel.textContent = waiting
      ? t("withdraw")
      : card.cancel_label || t(card.kind === "destructive" ? "cancel.destructive" : "cancel");
    ui.sayWhy.textContent = t("sayWhy");
    ui.why.setAttribute("aria-label", t("why"));
    ui.why.setAttribute("placeholder", t("why"));
    // Only a card the visitor declines themselves: a waiting request is only taken back.
    ui.sayWhy.hidden = waiting || !ui.why.hidden;
    if (waiting) ui.why.hidden = true;
    ui.confirm.setAttribute("aria-disabled", String(busy));
    ui.cancel.setAttribute("aria-disabled", String(busy));
    ui.buttons.setAttribute("aria-busy", String(busy));
    if (actionable && !ui.buttons.parentNode) entry.el.appendChild(ui.buttons);
    if (!actionable && ui.buttons.parentNode) removeCardButtons(entry);
  }

  // Removing a focused button would drop focus to the host page's <body>; a keyboard
  // user would have to tab back in. Hand focus to the card itself, which now shows the
  // outcome.
  function removeCardButtons(entry) {
    const ui = entry.ui;
    const focused = state.ui && state.ui.root.activeElement;
    if (focused && ui.buttons.contains(focused)) entry.el.focus({ preventScroll: true });
    ui.buttons.remove();
  }

  function renderResults(entry) {
    const results = Array.isArray(entry.card.results) ? entry.card.results : [];
    entry.ui.actionEls.forEach((action, index) => {
      const result = isObject(results[index]) ? results[index] : null;
      action.result.hidden = !result;
      if (!result) {
        action.el.removeAttribute("data-result");
        return;
      }
      action.el.setAttribute("data-result", String(result.status));
      // A lone call's failure is told once, by the card's status line.
      action.result.hidden = result.status === "failed" && entry.ui.actionEls.length === 1;
      let text = t("result." + result.status);
      if (result.status === "failed" && result.error !== undefined) text += ": " + formatValue(result.error);
      else if (result.status === "done" && result.message) text += " · " + shorten(String(result.message), 300);
      action.result.setAttribute("data-result", String(result.status));
      action.result.textContent = text;
    });
  }

  function shorten(text, max) {
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  function cardStatusText(entry) {
    const card = entry.card;
    const withDetail = (main, detail) => (detail ? main + " — " + detail : main);
    switch (card.status) {
      case "pending":
      case undefined:
        return "";
      case "waiting":
        return t("status.waiting"); // roles and levels are for teammates
      case "approved":
      case "running":
        return t("status.running");
      case "done": {
        const results = Array.isArray(card.results) ? card.results : [];
        const count = results.length
          ? results.filter((r) => isObject(r) && r.status === "done").length
          : Array.isArray(card.actions) ? card.actions.length : 0;
        return withDetail(t("status.done"), count === 1 ? t("doneOne") : t("doneMany", { count }));
      }
      case "failed":
        return withDetail(t("status.failed"), failureDetail(entry));
      case "cancelled":
        return card.superseded ? t("status.withdrawn") : t("status.cancelled");
      case "rejected":
        return withDetail(t("status.rejected"), card.reason ? visible(card.reason) : "");
      case "expired":
        return t("status.expired");
      case "interrupted":
        return t("status.interrupted");
      default:
        return String(card.status);
    }
  }

  function failureDetail(entry) {
    const results = Array.isArray(entry.card.results) ? entry.card.results : [];
    const index = results.findIndex((r) => isObject(r) && r.status === "failed");
    if (index < 0) return entry.card.reason ? visible(entry.card.reason) : "";
    const failed = results[index];
    const action = Array.isArray(entry.card.actions) ? entry.card.actions[index] : null;
    const name = (action && (action.title || action.action)) || failed.action || "";
    const error = failed.error !== undefined ? formatValue(failed.error) : "";
    return error ? name + ": " + error : name;
  }

  // --- Server frames ------------------------------------------------------------------------

  const HANDLERS = {
    welcome: onWelcome,
    message: onMessage,
    "message.start": onMessageStart,
    "message.delta": onMessageDelta,
    "message.end": onMessageEnd,
    card: onCard,
    "card.update": onCardUpdate,
    error: onError,
    snapshot: onSnapshot,
    "session.end": onSessionEnd,
    pong: function () {},
  };

  function onRawFrame(data) {
    state.lastFrameAt = Date.now();
    if (typeof data !== "string") return;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (err) {
      return;
    }
    if (!isObject(frame) || typeof frame.type !== "string") return;
    try {
      handleFrame(frame);
    } catch (err) {
      console.error("[signoff] failed to handle frame", frame.type, err);
    }
  }

  function handleFrame(frame) {
    // History frames carry seq: apply each once, in order, and remember the highest.
    // The welcome's seq is the history head, not a history frame of its own.
    const historic = frame.type !== "welcome" && typeof frame.seq === "number";
    if (historic) {
      if (frame.seq <= state.lastSeq) return;
      // Recorded even for types we do not know: they still count towards last_seq and
      // towards the end of a replay.
      state.lastSeq = frame.seq;
    }
    // Unknown frame types are ignored for forward compatibility. hasOwnProperty: a type
    // such as "constructor" must not reach Object.prototype.
    if (Object.prototype.hasOwnProperty.call(HANDLERS, frame.type)) HANDLERS[frame.type](frame);
    if (historic && state.replaying) noteReplayProgress(frame.seq);
  }

  function isLive(frame) {
    return !state.replaying && (typeof frame.seq !== "number" || frame.seq > state.welcomeSeq);
  }

  function onWelcome(frame) {
    dropForeignMessages(frame.user_id || null);
    state.userId = frame.user_id || null;
    // A different session than the one on screen (the server started over): its history
    // has nothing to do with what we show, so start the log afresh.
    if (state.sessionId && frame.session_id && frame.session_id !== state.sessionId) resetConversation();
    state.sessionId = frame.session_id || null;
    if (frame.session_token) storeToken(frame.session_token, frame.session_id || "");
    state.welcomed = true;
    state.site = {
      greeting: frame.greeting,
      suggestions: frame.suggestions,
      bot_name: typeof frame.bot_name === "string" ? frame.bot_name : null,
      bot_avatar: typeof frame.bot_avatar === "string" ? frame.bot_avatar : null,
    };
    if (state.ui) renderStaticText();
    clearTimeout(state.welcomeTimer);
    // A server that welcomes and then drops us at once (e.g. it closes on something we
    // send) must not get a reconnect storm: only a socket that stayed up resets the backoff.
    clearTimeout(state.stableTimer);
    state.stableTimer = setTimeout(() => {
      state.attempts = 0;
    }, STABLE_SOCKET_MS);
    setStatus(null);
    startPing();
    state.welcomeSeq = typeof frame.seq === "number" ? frame.seq : 0;
    if (state.ui && !state.ended) setComposerEnabled(true);
    emit("connected", withoutSessionToken(frame));
    if (state.welcomeSeq > state.lastSeq) {
      state.replaying = true;
      // A reload replays the whole conversation: screen readers should not read it all.
      setLogLive(false);
      armReplayTimer();
    } else {
      finishReplay();
    }
  }

  // Listeners get the welcome minus the session token: host scripts have no use for it, and
  // it would let them resume the conversation elsewhere.
  function withoutSessionToken(frame) {
    const copy = clone(frame);
    delete copy.session_token;
    return copy;
  }

  function setLogLive(live) {
    if (state.ui) state.ui.log.setAttribute("aria-live", live ? "polite" : "off");
  }

  function armReplayTimer() {
    clearTimeout(state.replayTimer);
    state.replayTimer = setTimeout(finishReplay, REPLAY_IDLE_MS);
  }

  function noteReplayProgress(seq) {
    if (seq >= state.welcomeSeq) finishReplay();
    else armReplayTimer();
  }

  // The history has caught up: now offer still-pending cards to the hook, and send what
  // waited for the connection (queued messages, decisions that may have been lost).
  function finishReplay() {
    clearTimeout(state.replayTimer);
    state.replayTimer = 0;
    state.replaying = false;
    setLogLive(true);
    showGreeting();
    runDeferredHooks();
    if (canSend()) {
      flushOutbox();
      flushDecisions();
      flushPageCalls();
    }
  }

  // The visitor's own message, as recorded (the protocol sends only role "user" here).
  function onMessage(frame) {
    const item = frame.client_id ? state.outbox.find((o) => o.clientId === frame.client_id) : null;
    if (item) {
      state.outbox = state.outbox.filter((other) => other !== item);
      markDelivered(item, frame);
    } else if (!frame.message_id || !state.messages.has(frame.message_id)) {
      renderHistoryMessage("user", frame.text || "", frame.message_id);
    }
    stamp(state.messages.get(frame.message_id), frame.at);
    emit("message", frame);
  }

  // When a message was sent (the server's clock), in the visitor's time and language.
  function stamp(message, at) {
    const when = typeof at === "string" ? new Date(at) : null;
    if (!message || !when || isNaN(when.getTime()) || message.row.querySelector(".signoff-time")) return;
    const locale = resolveLocale();
    const shown = when.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" });
    const time = h("time", { class: "signoff-time", datetime: at, title: when.toLocaleString(locale), text: shown });
    // A run of messages in the same minute shows its time once, under the first. Kept,
    // not looked up: a replay stamps every message of the history.
    if (state.lastStamp === shown) time.hidden = true;
    state.lastStamp = shown;
    message.row.appendChild(time);
  }

  function botMessage(messageId, role) {
    let message = state.messages.get(messageId);
    if (!message) {
      message = renderHistoryMessage(role || "bot", "", messageId);
      setTyping(message, true);
    }
    return message;
  }

  function onMessageStart(frame) {
    stamp(botMessage(frame.message_id, frame.role), frame.at);
  }

  function onMessageDelta(frame) {
    const message = botMessage(frame.message_id);
    const piece = typeof frame.text === "string" ? frame.text : "";
    keepScrolled(() => {
      // Appended, not rewritten: long replies stay linear in their length.
      message.text += piece;
      message.textEl.appendChild(document.createTextNode(piece));
    });
  }

  function onMessageEnd(frame) {
    const message = botMessage(frame.message_id);
    keepScrolled(() => {
      if (typeof frame.text === "string") message.text = frame.text; // the full final text wins
      // Rewriting identical text would make screen readers read the message again.
      if (message.textEl.textContent !== message.text) message.textEl.textContent = message.text;
      setTyping(message, false);
    });
    if (!state.panelOpen && isLive(frame)) setUnread(true);
    emit("message", { message_id: frame.message_id, role: message.role, text: message.text });
  }

  const CARD_FIELDS = [
    "card_id", "status", "kind", "approver", "title", "text", "actions", "args_hash",
    "expires_at", "level", "role", "levels", "decided_by", "reason", "results",
    "confirm_label", "cancel_label",
  ];
  const UPDATE_FIELDS = ["status", "decided_by", "level", "role", "reason", "results", "superseded"];

  function copyFields(target, frame, fields) {
    for (const field of fields) if (field in frame) target[field] = clone(frame[field]);
  }

  function onCard(frame) {
    if (!frame.card_id) return;
    const entry = cardEntry(frame.card_id);
    copyFields(entry.card, frame, CARD_FIELDS);
    entry.known = true;
    const call = frame.page_call ? state.pageCalls.get(frame.page_call) : null;
    if (call) {
      call.cardId = entry.id;
      entry.pageCall = frame.page_call;
      if (isLive(frame)) setOpen(true); // the visitor must see what the page asked for
    }
    settlePageCall(entry);
    if (!IN_PROGRESS.has(entry.card.status)) settleDecision(entry, "resolve", frame);
    emit("card", publicCard(entry));
    if (entry.hidden || !state.ui) return;

    const wantsHook = entry.card.status === "pending" && !entry.hookAsked && state.options.onApprovalRequest;
    if (wantsHook && state.replaying) {
      entry.deferred = true;
      ensureCardElement(entry);
      entry.el.hidden = true;
    } else if (wantsHook && askHook(entry)) {
      return; // the host draws this card
    }
    ensureCardElement(entry);
    keepScrolled(() => {
      renderCardBody(entry);
      updateCardView(entry);
    });
    if (!state.panelOpen && isLive(frame)) setUnread(true);
    else if (isLive(frame) && entry.card.status === "pending") focusNewCard(entry);
  }

  // A keyboard or screen-reader visitor who just sent a message lands on the card that
  // answers it (the card, not its Confirm: a second Enter must not decide). Someone typing
  // their next message keeps the composer.
  function focusNewCard(entry) {
    const input = state.ui.input;
    if (state.ui.root.activeElement !== input || input.value.trim() !== "") return;
    entry.el.focus({ preventScroll: true });
  }

  function onCardUpdate(frame) {
    if (!frame.card_id) return;
    const entry = cardEntry(frame.card_id);
    copyFields(entry.card, frame, UPDATE_FIELDS);
    // The same race the other way round: our already_decided arrived while the winner's
    // run was still going; now that the outcome is shown, the error says nothing more.
    if (FINAL.has(entry.card.status) && entry.errorCode === "already_decided") clearCardError(entry);
    // decide() resolves with the update that carries the outcome (done, failed,
    // cancelled, ...), not with the intermediate approved/running.
    if (!IN_PROGRESS.has(entry.card.status)) settleDecision(entry, "resolve", frame);
    settlePageCall(entry);
    emit("card.update", frame);
    if (entry.el) keepScrolled(() => updateCardView(entry));
  }

  // History this page missed was trimmed on the server, which sends the session as it is
  // now instead. The view is drawn again from it; card entries (and any decision in
  // flight) are kept and their cards drawn again in their place.
  function onSnapshot(frame) {
    if (!Array.isArray(frame.frames)) return;
    state.messages.clear();
    for (const entry of state.cards.values()) entry.el = null;
    clearLog();
    for (const inner of frame.frames) {
      if (isObject(inner) && SNAPSHOT_TYPES.has(inner.type)) HANDLERS[inner.type](inner);
    }
  }

  function errorText(frame) {
    const key = "error." + frame.code;
    if (key in state.strings) return t(key);
    return frame.message ? String(frame.message) : t("error.generic");
  }

  function onError(frame) {
    emit("error", frame);
    // The stored session is gone (expired, revoked, wrong site): start fresh, same socket.
    if (!state.welcomed && state.helloHadToken && SESSION_ERRORS.has(frame.code)) {
      const shown = state.lastSeq > 0;
      clearToken();
      resetConversation();
      sendHello();
      // Expired, or lost in a restart of a server that keeps sessions in memory: the
      // visitor should know why the conversation is gone, not find it silently empty.
      if (shown) showNotice(t("startedOver"));
      return;
    }
    if (!state.welcomed && !frame.ref) {
      // A refused site or origin: the server closes with 1008 and its reason next.
      if (frame.code === "forbidden") return;
      if (frame.code === "unauthorized") {
        refuse("user token", frame.message);
        return;
      }
    }
    const entry = frame.ref ? state.cards.get(frame.ref) : null;
    if (entry) {
      onDecisionError(entry, frame);
      return;
    }
    if (refusePageCall(frame)) return;
    const item = frame.ref ? state.outbox.find((o) => o.clientId === frame.ref) : null;
    if (item && RETRY_LATER_ERRORS.has(frame.code)) {
      retryLater(item);
      return;
    }
    if (item) markFailed(item);
    showNotice(errorText(frame));
  }

  function onDecisionError(entry, frame) {
    // The losing tab of a double confirm: the card already shows the outcome, and this
    // tab has nothing waiting, so "Already decided" would only contradict "Done".
    if (frame.code === "already_decided" && FINAL.has(entry.card.status) && !entry.decision) return;
    settleDecision(entry, "reject", frame);
    if (!RETRYABLE_DECISION_ERRORS.has(frame.code)) entry.locked = true;
    entry.error = errorText(frame);
    entry.errorCode = frame.code;
    if (entry.el) updateCardView(entry);
  }

  // The session is over on the server. Forget it (unless another tab already stored a new
  // one), let go of the socket until the visitor starts again, and settle every decision
  // still waiting: no answer will come for them.
  function onSessionEnd(frame) {
    state.ended = true;
    if (storedIsShown()) clearToken();
    clearTimeout(state.reconnectTimer);
    detachSocket(); // also stops pinging; startNewConversation opens a fresh socket
    setStatus(null);
    for (const entry of state.cards.values()) {
      settleDecision(entry, "reject", sessionEndedError(entry.id));
      if (entry.el) updateCardView(entry); // no more buttons
    }
    if (state.ui) {
      state.ui.composer.hidden = true;
      state.ui.ended.hidden = false;
      if (state.ui.root.activeElement === state.ui.input) state.ui.restart.focus();
    }
    emit("session.end", frame);
  }

  // --- Conversation reset ---------------------------------------------------------------

  function resetConversation() {
    state.lastSeq = 0;
    state.welcomeSeq = 0;
    state.sessionId = null;
    state.replaying = false;
    clearTimeout(state.replayTimer);
    setLogLive(true);
    for (const entry of state.cards.values()) {
      settleDecision(entry, "reject", { type: "error", code: "expired", message: "The conversation was reset", ref: entry.id });
    }
    state.cards.clear();
    state.messages.clear();
    // A page's call whose card was in that conversation ends with it; one not yet
    // answered is sent again into the new one.
    for (const [clientId, call] of state.pageCalls) {
      if (!call.cardId) continue;
      state.pageCalls.delete(clientId);
      call.reject({ type: "error", code: "expired", message: "The conversation was reset", ref: clientId });
    }
    // Undelivered messages survive: they are re-sent into the new conversation.
    for (const item of state.outbox) item.socket = 0;
    clearLog();
    if (state.ui) {
      state.ui.notices.replaceChildren();
      state.ui.ended.hidden = true;
      state.ui.composer.hidden = false;
    }
  }

  function startNewConversation() {
    // If another tab already moved on to a new session, join that one instead of
    // splitting the tabs over two conversations.
    if (!loadToken() || storedIsShown()) clearToken();
    state.ended = false;
    resetConversation();
    state.attempts = 0;
    detachSocket();
    connect();
    if (state.ui) state.ui.input.focus();
  }

  // --- Status line and notices ----------------------------------------------------------

  function setStatus(key, kind) {
    clearTimeout(state.connectingTimer);
    const ui = state.ui;
    if (!ui) return;
    ui.statusKey = key;
    ui.status.hidden = !key;
    ui.status.textContent = key ? t(key) : "";
    ui.status.setAttribute("data-kind", kind || "info");
  }

  function setComposerEnabled(enabled) {
    state.ui.input.disabled = !enabled;
    state.ui.sendButton.disabled = !enabled;
  }

  function showNotice(text) {
    const ui = state.ui;
    if (!ui) return;
    for (const existing of ui.notices.children) {
      if (existing.firstChild && existing.firstChild.textContent === text) return;
    }
    while (ui.notices.children.length >= MAX_NOTICES) ui.notices.firstChild.remove();
    const dismiss = h("button", {
      type: "button",
      class: "signoff-notice-dismiss",
      "aria-label": t("dismiss"),
      title: t("dismiss"),
    }, icon("close"));
    const notice = h("div", { class: "signoff-notice", role: "alert" }, h("span", { text }), dismiss);
    dismiss.addEventListener("click", () => {
      notice.remove();
      if (state.panelOpen) ui.input.focus();
    });
    ui.notices.appendChild(notice);
  }

  // --- Connection -------------------------------------------------------------------------

  function connect() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = 0;
    if (state.ended || state.refused || state.ws) return;
    let ws;
    try {
      ws = new WebSocket(URLS.ws);
    } catch (err) {
      console.error("[signoff] cannot open WebSocket:", err);
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    state.socketSeq += 1;
    state.welcomed = false;
    // Handlers check `state.ws === ws` so a replaced socket can never touch the state.
    ws.onopen = () => {
      if (state.ws === ws) sendHello();
    };
    ws.onmessage = (event) => {
      if (state.ws === ws) onRawFrame(event.data);
    };
    ws.onclose = (event) => {
      if (state.ws === ws) onSocketClosed(event.code, event.reason);
    };
    // A handshake or hello that hangs (a proxy swallowing frames, a server stuck before
    // welcome) would otherwise leave the widget "connecting" for good.
    state.welcomeTimer = setTimeout(() => {
      if (state.ws === ws && !state.welcomed) onSocketClosed(4001, "no welcome");
    }, WELCOME_TIMEOUT_MS);
  }

  function sendHello() {
    const token = loadToken() || null;
    state.helloHadToken = Boolean(token);
    state.lastFrameAt = Date.now();
    // Our last_seq only means something for the session this page is showing.
    const sameSession = Boolean(token) && loadSessionId() === state.sessionId;
    sendFrame({
      type: "hello",
      site: state.options.site,
      user_token: state.options.userToken || null,
      session_token: token,
      last_seq: sameSession ? state.lastSeq : 0,
    });
  }

  // Forget the current socket without the close handler running (it is replaced).
  function detachSocket() {
    const ws = state.ws;
    state.ws = null;
    state.welcomed = false;
    stopPing();
    clearTimeout(state.welcomeTimer);
    clearTimeout(state.stableTimer);
    clearTimeout(state.outboxTimer);
    state.outboxTimer = 0;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      ws.close(1000);
    } catch (err) {
      /* already closed */
    }
  }

  function onSocketClosed(code, reason) {
    const wasConnected = state.welcomed;
    detachSocket();
    if (wasConnected || code === 1008) emit("disconnected", { code, reason });
    if (code === 1008) {
      refuse(reason || "policy");
      return;
    }
    if (state.ended) {
      setStatus(null);
      return;
    }
    setStatus("reconnecting");
    scheduleReconnect();
  }

  // A mistake in the site's setup (origin, site name, user token): retrying cannot fix
  // it. The visitor reads a calm "unavailable"; the site owner finds the fix in the console.
  function refuse(cause, detail) {
    state.refused = true;
    state.refusal = cause;
    detachSocket();
    setStatus("unavailable", "error");
    if (state.ui) setComposerEnabled(false);
    console.error("[signoff] the chat is off: " + setupFix(cause, detail));
  }

  function setupFix(cause, detail) {
    const site = "'" + state.options.site + "'";
    const origins = "[sites." + state.options.site + "] origins";
    if (cause === "origin not allowed") {
      return (
        "this page's origin " + location.origin + " is not allowed for site " + site +
        ". Add it to " + origins + " in the signoff server's configuration " +
        "(docs/embedding.md#allowed-origins)."
      );
    }
    if (cause === "unknown site") {
      return (
        "the signoff server has no site " + site + ". Set data-site to one of its sites, " +
        "or add [sites." + state.options.site + "] with this page's origin " +
        location.origin + " to its configuration (docs/embedding.md#allowed-origins)."
      );
    }
    if (cause === "user token") {
      return (
        "the signoff server refused this page's user token (" + detail + "). Sign a " +
        "fresh one with the server's secret and pass it to Signoff.init({userToken}) " +
        "(docs/embedding.md#signing-user-tokens)."
      );
    }
    return "the signoff server refused the connection (" + cause + ").";
  }

  // 0.5 s doubling up to 10 s, with jitter (applied after the cap, so it stays even at
  // the cap) so many widgets don't reconnect in lockstep after a server restart.
  function scheduleReconnect() {
    clearTimeout(state.reconnectTimer);
    const capped = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, state.attempts));
    const delay = capped * (0.7 + 0.3 * Math.random());
    state.attempts += 1;
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function startPing() {
    stopPing();
    state.pingTimer = setInterval(() => {
      // A socket that has been silent through two pings is dead even if the browser has
      // not noticed yet (e.g. after sleep or a network switch): reconnect.
      if (Date.now() - state.lastFrameAt > DEAD_SOCKET_MS) {
        onSocketClosed(4000, "timeout");
        return;
      }
      sendFrame({ type: "ping" });
    }, PING_INTERVAL_MS);
  }

  function stopPing() {
    clearInterval(state.pingTimer);
    state.pingTimer = 0;
  }

  // Another tab stored a different session (it started a new conversation, or its
  // stored one was refused): follow it, so all tabs keep showing one conversation. The
  // hello sends last_seq 0 because the stored session is not the one on screen.
  function onStorage(event) {
    if (event.key !== tokenKey() && event.key !== sessionIdKey() && event.key !== null) return;
    if (!state.started || state.refused) return;
    const stored = loadSessionId();
    // Nothing stored: the other tab is between clearing and storing; wait for its store.
    if (!stored || !loadToken() || stored === state.sessionId) return;
    state.ended = false;
    state.attempts = 0;
    detachSocket();
    connect();
  }

  function onBrowserOnline() {
    // Back online: try at once rather than waiting out the backoff.
    if (state.started && !state.ws && state.reconnectTimer) connect();
  }

  // The visitor logged in, out, or switched accounts. The current socket still speaks for
  // the previous user, so its cards must not stay decidable: say hello again as the new
  // user. The server then resumes the stored session (same user) or refuses it, and the
  // widget starts a fresh one (see onError).
  function onUserChanged() {
    // What is still in the outbox was written as the previous user. Hold it until the
    // welcome says who this page now speaks for (see dropForeignMessages).
    for (const item of state.outbox) {
      if (!("author" in item)) item.author = state.userId;
    }
    if (state.refusal === "user token") {
      // A new token may be a good one: try it.
      state.refused = false;
      state.refusal = null;
      setStatus(null);
      if (state.ui) setComposerEnabled(true);
    }
    if (state.refused || state.ended) return; // the next hello will carry the new token
    state.attempts = 0;
    detachSocket();
    connect();
  }

  // Messages queued before a user change belong to the previous user: they go out only if
  // the welcome is for that same user (a refreshed token). For anyone else they are
  // dropped, like the rest of the previous user's conversation, rather than sent into the
  // new user's conversation. The outbox only flushes after a welcome, so nothing went out
  // on the new user's behalf before this runs.
  function dropForeignMessages(userId) {
    const keep = [];
    for (const item of state.outbox) {
      if (!("author" in item)) keep.push(item);
      else if (item.author !== null && item.author === userId) {
        delete item.author;
        keep.push(item);
      } else if (item.row) {
        item.row.remove();
      }
    }
    state.outbox = keep;
  }

  // --- Start ----------------------------------------------------------------------------

  function start() {
    if (state.started) return;
    if (!state.options.site) {
      console.warn("[signoff] no site given (data-site or Signoff.init({site})); not starting");
      return;
    }
    state.started = true;
    resolveStrings();
    mount();
    for (const item of state.outbox) renderPendingMessage(item);
    // Opened on load, the panel must not take focus away from the host page; on a phone,
    // where it would cover the page, it waits for the visitor (the launcher says when a
    // card arrives).
    if (state.options.open && !fullScreen()) setOpen(true, { focus: false });
    window.addEventListener("online", onBrowserOnline);
    window.addEventListener("storage", onStorage);
    // Only show "Connecting…" if the first connection is slow.
    state.connectingTimer = setTimeout(() => {
      if (!state.welcomed && !state.refused) setStatus("connecting");
    }, CONNECTING_HINT_DELAY_MS);
    connect();
  }

  function maybeStart() {
    if (state.started || !state.options.site) return;
    if (!document.body) {
      document.addEventListener("DOMContentLoaded", maybeStart, { once: true });
      return;
    }
    start();
  }

  // Re-apply options that can change after start (init called again).
  function applyOptions(options) {
    if (!state.ui) return;
    if ("locale" in options || "strings" in options) {
      resolveStrings();
      renderStaticText();
    }
    if ("theme" in options) applyTheme();
    if ("open" in options) setOpen(Boolean(options.open));
  }

  // --- Host-page buttons: Signoff.call ---------------------------------------------------
  // The page asks for an action; the server opens a card for it (only for actions the
  // site lets its pages call). The promise settles with the card's outcome, or rejects with
  // the server's error frame.

  function pageCall(action, args) {
    if (typeof action !== "string" || !isObject(args)) {
      return Promise.reject(new TypeError("Signoff.call(action, args) takes a name and an object"));
    }
    if (!state.started || state.ended || state.refused) {
      return Promise.reject({ type: "error", code: "unavailable", message: "The chat is not running" });
    }
    const clientId = newClientId();
    const frame = { type: "call", client_id: clientId, action: action, args: null };
    try {
      frame.args = clone(args);
      // Over the server's frame limit the socket would close, and the call be sent again
      // after every reconnect: refused here instead.
      if (new Blob([JSON.stringify(frame)]).size > MAX_FRAME_BYTES) throw new RangeError("too large");
    } catch (err) {
      return Promise.reject({ type: "error", code: "bad_frame", message: "Signoff.call: args are not plain JSON or too large", ref: clientId });
    }
    const call = { frame: frame, socket: 0 };
    const promise = new Promise((resolve, reject) => {
      call.resolve = resolve;
      call.reject = reject;
    });
    state.pageCalls.set(clientId, call);
    if (canSend()) sendPageCall(call);
    return promise;
  }

  function sendPageCall(call) {
    if (sendFrame(call.frame)) call.socket = state.socketSeq;
  }

  // A call sent on a socket that died may never have arrived; the server takes each
  // client_id once, so sending it again is harmless.
  function flushPageCalls() {
    for (const call of state.pageCalls.values()) {
      if (!call.cardId && call.socket !== state.socketSeq) sendPageCall(call);
    }
  }

  function settlePageCall(entry) {
    const call = entry.pageCall ? state.pageCalls.get(entry.pageCall) : null;
    if (!call || !FINAL.has(entry.card.status)) return;
    state.pageCalls.delete(entry.pageCall);
    call.resolve(publicCard(entry));
  }

  function refusePageCall(frame) {
    const call = frame.ref ? state.pageCalls.get(frame.ref) : null;
    if (!call) return false;
    state.pageCalls.delete(frame.ref);
    call.reject(frame);
    return true;
  }

  // --- Public API -----------------------------------------------------------------------

  const api = {
    __signoff: true,
    version: VERSION,
    init(options) {
      const previousUser = state.options.userToken;
      mergeOptions(options);
      if (state.started) {
        applyOptions(isObject(options) ? options : {});
        if (state.options.userToken !== previousUser) onUserChanged();
      } else {
        maybeStart();
      }
      return api;
    },
    open() {
      setOpen(true);
    },
    close() {
      setOpen(false);
    },
    send(text) {
      const value = text === null || text === undefined ? "" : String(text).trim();
      if (!value || state.ended || state.refused) return null;
      return sendChat(value);
    },
    on: on,
    call: pageCall,
    // For custom approval UIs: a card's values shown the way the widget shows them.
    visible: formatValue,
  };

  mergeOptions(readDataAttributes(SCRIPT));
  mergeOptions(window.signoffSettings);
  window.Signoff = Object.freeze(api);
  window.dispatchEvent(new CustomEvent("signoff:ready"));
  maybeStart();
})();

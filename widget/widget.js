/*!
 * signoff widget: an embeddable chat with confirmation cards.
 *
 *   <script src="https://host/widget.js" data-site="shop" async></script>
 *
 * Plain ES2020, no build step, no dependencies. Everything lives in one IIFE and one
 * `state` object. The UI sits in an open shadow root under <div id="signoff-root"> so
 * host-page CSS cannot leak in. Server and user data only ever reach the DOM through
 * textContent / setAttribute, never through HTML parsing.
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

  // widget.css sits next to widget.js; the socket is /ws on the script's own origin.
  function deriveUrls(script) {
    const src = new URL(script ? script.src : "/widget.js", location.href);
    const css = new URL(src.href);
    css.pathname = /widget\.js$/.test(css.pathname)
      ? css.pathname.replace(/widget\.js$/, "widget.css")
      : css.pathname.replace(/[^/]*$/, "widget.css");
    css.hash = "";
    const wsProtocol = src.protocol === "https:" ? "wss:" : "ws:";
    return { css: css.href, ws: wsProtocol + "//" + src.host + "/ws" };
  }

  const SCRIPT = findOwnScript();
  const URLS = deriveUrls(SCRIPT);

  // --- Tunables -------------------------------------------------------------------------

  const PING_INTERVAL_MS = 25000;
  const DEAD_SOCKET_MS = 60000; // no frame at all for this long: assume the socket is dead
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const REPLAY_IDLE_MS = 300; // fallback for "history replay finished" detection
  const CONNECTING_HINT_DELAY_MS = 800; // don't flash "Connecting…" on fast first connects
  const CSS_REVEAL_TIMEOUT_MS = 4000;
  const MAX_TEXT = 4000;
  const MAX_NOTICES = 3;
  const NEAR_BOTTOM_PX = 80;

  // Errors that, answering a hello that carried a stored session token, mean "that
  // session is gone": start a fresh one on the same socket.
  const SESSION_ERRORS = new Set(["unauthorized", "expired", "forbidden"]);
  // Card statuses that are still on the way to an outcome after a decision was accepted.
  const IN_PROGRESS = new Set(["pending", "approved", "running"]);
  // Decision errors that leave the card pending, so the visitor may try again.
  const RETRYABLE_DECISION_ERRORS = new Set(["hash_mismatch", "rate_limited"]);

  // --- Strings --------------------------------------------------------------------------
  // Every visible (or screen-reader) string. `strings` in the options overrides single
  // keys; `{name}` placeholders are filled in by t().

  const STRINGS = {
    en: {
      title: "Chat",
      openChat: "Open chat",
      closeChat: "Close chat",
      placeholder: "Type a message…",
      inputLabel: "Message",
      send: "Send",
      you: "You:",
      bot: "Assistant:",
      confirm: "Confirm",
      confirmAll: "Confirm all",
      cancel: "Cancel",
      "kind.write": "Write",
      "kind.destructive": "Destructive",
      "status.waiting": "Waiting for a teammate",
      levelOf: "Level {level} of {total}",
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
      originRefused: "This site is not allowed to use the chat.",
      sessionEnded: "This conversation has ended",
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
      "error.too_large": "That message is too long.",
      "error.generic": "Something went wrong.",
    },
    de: {
      title: "Chat",
      openChat: "Chat öffnen",
      closeChat: "Chat schließen",
      placeholder: "Nachricht schreiben…",
      inputLabel: "Nachricht",
      send: "Senden",
      you: "Sie:",
      bot: "Assistent:",
      confirm: "Bestätigen",
      confirmAll: "Alle bestätigen",
      cancel: "Abbrechen",
      "kind.write": "Änderung",
      "kind.destructive": "Unwiderruflich",
      "status.waiting": "Wartet auf ein Teammitglied",
      levelOf: "Stufe {level} von {total}",
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
      originRefused: "Diese Website darf den Chat nicht verwenden.",
      sessionEnded: "Dieses Gespräch ist beendet",
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
    pingTimer: 0,
    connectingTimer: 0,
    lastFrameAt: 0,
    refused: false, // closed with 1008: never reconnect
    ended: false, // session.end received: wait for the visitor to restart
    memoryToken: null, // used when localStorage is unavailable
    memorySessionId: null,

    // Session history
    sessionId: null,
    lastSeq: 0, // highest seq applied; sent as last_seq on reconnect
    welcomeSeq: 0, // seq in the last welcome: where the history replay catches up
    replaying: false,
    replayTimer: 0,
    messages: new Map(), // message_id -> message record
    cards: new Map(), // card_id -> card entry (insertion order = history order)
    cardElementCount: 0, // for unique element ids inside the shadow root
    outbox: [], // chat messages not yet confirmed by the server: {clientId, text, row, socket}
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

  function formatValue(value) {
    if (typeof value === "string") return value;
    if (value === undefined) return "";
    try {
      return JSON.stringify(value);
    } catch (err) {
      return String(value);
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

  function loadSessionId() {
    return loadStored(tokenKey() + "_id", state.memorySessionId);
  }

  function storeToken(token, sessionId) {
    state.memoryToken = token;
    state.memorySessionId = sessionId;
    try {
      window.localStorage.setItem(tokenKey(), token);
      window.localStorage.setItem(tokenKey() + "_id", sessionId);
    } catch (err) {
      /* memory fallback already set */
    }
  }

  function clearToken() {
    state.memoryToken = null;
    state.memorySessionId = null;
    try {
      window.localStorage.removeItem(tokenKey());
      window.localStorage.removeItem(tokenKey() + "_id");
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
    if ("userToken" in options) target.userToken = options.userToken || null; // used by the next hello
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

  // Theme values become CSS custom properties on the host; unset ones fall back to the
  // defaults in widget.css (which follow prefers-color-scheme).
  function applyTheme() {
    const host = state.ui.host;
    const theme = state.options.theme || {};
    for (const [key, property] of Object.entries(THEME_PROPERTIES)) {
      let value = theme[key];
      if (value === null || value === undefined || value === "") {
        host.style.removeProperty(property);
        continue;
      }
      if (key === "radius" && typeof value === "number") value = value + "px";
      host.style.setProperty(property, String(value));
    }
    host.setAttribute("data-position", theme.position === "left" ? "left" : "right");
  }

  // --- Mounting ---------------------------------------------------------------------------

  function mount() {
    let host = document.getElementById("signoff-root");
    if (!host || host.shadowRoot) {
      host = h("div", { id: "signoff-root" });
      document.body.appendChild(host);
    }
    // Shield the host element from page rules like `div { padding: 30px }`; inline
    // declarations beat the page's selectors. Custom properties (theming) are unaffected.
    host.style.setProperty("all", "initial");
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
    const link = h("link", { rel: "stylesheet", href: URLS.css });
    link.addEventListener("load", reveal);
    link.addEventListener("error", reveal);
    setTimeout(reveal, CSS_REVEAL_TIMEOUT_MS);

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
    const closeButton = h("button", { type: "button", class: "signoff-close" }, icon("close"));
    const header = h("div", { class: "signoff-header" }, title, closeButton);

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
    root.append(link, wrap);

    state.ui = {
      host, root, wrap, launcher, launcherDot, panel, title, closeButton, status, log,
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
    ui.panel.setAttribute("aria-label", t("title"));
    ui.title.textContent = t("title");
    ui.closeButton.setAttribute("aria-label", t("closeChat"));
    ui.closeButton.setAttribute("title", t("closeChat"));
    ui.launcher.setAttribute("aria-label", state.panelOpen ? t("closeChat") : t("openChat"));
    ui.log.setAttribute("aria-label", t("title"));
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
    ui.launcher.setAttribute("aria-label", open ? t("closeChat") : t("openChat"));
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
    sendChat(text);
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

  function clearLog() {
    const ui = state.ui;
    if (!ui) return;
    ui.log.replaceChildren();
    for (const item of state.outbox) if (item.row) ui.log.appendChild(item.row);
  }

  // --- Messages ---------------------------------------------------------------------------

  function createMessage(role, text, messageId) {
    const row = h("div", { class: "signoff-row", "data-role": role });
    // Screen readers hear who spoke; the bubble's own text stays exactly the message.
    const speaker = h("span", { class: "signoff-sr", text: role === "user" ? t("you") : t("bot") });
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
    appendToLog(message.row); // moves it to its place in the history
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

  function sendChat(text) {
    const item = { clientId: newClientId(), text: text, row: null, message: null, socket: 0 };
    state.outbox.push(item);
    if (state.ui) renderPendingMessage(item);
    if (canSend()) sendOutboxItem(item);
    return item.clientId;
  }

  function sendOutboxItem(item) {
    const sent = sendFrame({ type: "message", client_id: item.clientId, text: item.text });
    if (sent) item.socket = state.socketSeq;
  }

  // After a (re)connect, send whatever this socket has not carried yet. Re-sending a
  // message the server already has is harmless: client_id makes it idempotent.
  function flushOutbox() {
    for (const item of state.outbox) {
      if (item.socket !== state.socketSeq) sendOutboxItem(item);
    }
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
      };
      state.cards.set(cardId, entry);
    }
    return entry;
  }

  function publicCard(entry) {
    return clone(entry.card);
  }

  function decide(cardId, value) {
    if (value !== "confirm" && value !== "cancel") {
      return Promise.reject(new TypeError('decision must be "confirm" or "cancel"'));
    }
    const entry = state.cards.get(cardId);
    if (!entry || !entry.known) {
      return Promise.reject({ type: "error", code: "not_found", message: "Unknown card", ref: cardId });
    }
    // One decision in flight per card: double clicks and repeated calls send once.
    if (entry.decision) return entry.decision.promise;
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    entry.decision = { value, socket: 0, resolve, reject, promise };
    entry.error = "";
    if (entry.el) updateCardView(entry);
    if (canSend()) sendDecision(entry);
    return promise;
  }

  function sendDecision(entry) {
    const sent = sendFrame({
      type: "decision",
      card_id: entry.id,
      decision: entry.decision.value,
      args_hash: entry.card.args_hash,
    });
    if (sent) entry.decision.socket = state.socketSeq;
  }

  // A decision sent on a socket that died may never have arrived. If the replay did not
  // bring the card past pending, send it again (the server's compare-and-set makes a
  // duplicate harmless), else the update already settled it.
  function flushDecisions() {
    for (const entry of state.cards.values()) {
      const decision = entry.decision;
      if (decision && decision.socket !== state.socketSeq && entry.card.status === "pending") {
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

  function onDecisionClick(entry, value) {
    if (entry.decision || entry.locked || entry.card.status !== "pending") return;
    // The default UI has nobody awaiting the promise; the card shows any error itself.
    decide(entry.id, value).catch(() => {});
  }

  // Asks the host's onApprovalRequest hook; true means the host draws the card itself.
  function askHook(entry) {
    const hook = state.options.onApprovalRequest;
    entry.hookAsked = true;
    if (!hook) return false;
    let handled = false;
    try {
      handled = hook(publicCard(entry), (decision) => decide(entry.id, decision)) === true;
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
    const buttons = h("div", { class: "signoff-card-buttons" }, confirm, cancel);
    const el = h(
      "div",
      { class: "signoff-card", role: "group", "data-card-id": entry.id, "aria-labelledby": title.id },
      h("div", { class: "signoff-card-head" }, badge),
      title,
      text,
      actions,
      status,
      error
    );
    confirm.addEventListener("click", () => onDecisionClick(entry, "confirm"));
    cancel.addEventListener("click", () => onDecisionClick(entry, "cancel"));
    entry.el = el;
    entry.ui = { badge, title, text, actions, status, error, buttons, confirm, cancel, actionEls: [] };
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
    const args = isObject(action.args) ? Object.entries(action.args) : [];
    if (args.length) {
      const list = h("dl", { class: "signoff-args" });
      for (const [key, value] of args) {
        list.appendChild(
          h("div", { class: "signoff-arg" }, h("dt", { text: key }), h("dd", { text: formatValue(value) }))
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

    // The buttons exist only while the visitor has a say (pending, no final error);
    // while a decision is on its way they stay, disabled, so a double click sends once.
    const actionable = card.status === "pending" && !entry.locked;
    const busy = Boolean(entry.decision);
    const count = Array.isArray(card.actions) ? card.actions.length : 0;
    ui.confirm.textContent = count > 1 ? t("confirmAll") : t("confirm");
    ui.cancel.textContent = t("cancel");
    ui.confirm.disabled = busy;
    ui.cancel.disabled = busy;
    ui.buttons.setAttribute("aria-busy", String(busy));
    if (actionable && !ui.buttons.parentNode) entry.el.appendChild(ui.buttons);
    if (!actionable && ui.buttons.parentNode) ui.buttons.remove();
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
      let text = t("result." + result.status);
      if (result.status === "failed" && result.error !== undefined) text += ": " + formatValue(result.error);
      else if (result.status === "done" && result.result !== undefined && result.result !== null) {
        text += " · " + shorten(formatValue(result.result), 120);
      }
      action.result.setAttribute("data-result", String(result.status));
      action.result.textContent = text;
    });
  }

  function shorten(text, max) {
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  function levelText(card) {
    const levels = Array.isArray(card.levels) ? card.levels : null;
    const level = Number(card.level) || 0;
    const role = card.role || (levels && level ? levels[level - 1] : "");
    const parts = [];
    if (level && levels && levels.length) parts.push(t("levelOf", { level: level, total: levels.length }));
    if (role) parts.push(String(role));
    return parts.join(": ");
  }

  function cardStatusText(entry) {
    const card = entry.card;
    const withDetail = (main, detail) => (detail ? main + " — " + detail : main);
    switch (card.status) {
      case "pending":
      case undefined:
        return "";
      case "waiting":
        return withDetail(t("status.waiting"), levelText(card));
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
        return t("status.cancelled");
      case "rejected":
        return withDetail(t("status.rejected"), card.reason ? String(card.reason) : "");
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
    if (index < 0) return entry.card.reason ? String(entry.card.reason) : "";
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
    const handler = HANDLERS[frame.type];
    if (!handler) return; // unknown frame types are ignored for forward compatibility
    // History frames carry seq: apply each once, in order, and remember the highest.
    // The welcome's seq is the history head, not a history frame of its own.
    const historic = frame.type !== "welcome" && typeof frame.seq === "number";
    if (historic) {
      if (frame.seq <= state.lastSeq) return;
      state.lastSeq = frame.seq;
    }
    handler(frame);
    if (historic && state.replaying) noteReplayProgress(frame.seq);
  }

  function isLive(frame) {
    return !state.replaying && (typeof frame.seq !== "number" || frame.seq > state.welcomeSeq);
  }

  function onWelcome(frame) {
    // A different session than the one on screen (the server started over): its history
    // has nothing to do with what we show, so start the log afresh.
    if (state.sessionId && frame.session_id && frame.session_id !== state.sessionId) resetConversation();
    state.sessionId = frame.session_id || null;
    if (frame.session_token) storeToken(frame.session_token, frame.session_id || "");
    state.welcomed = true;
    state.attempts = 0;
    setStatus(null);
    startPing();
    state.welcomeSeq = typeof frame.seq === "number" ? frame.seq : 0;
    if (state.ui && !state.ended) setComposerEnabled(true);
    emit("connected", frame);
    if (state.welcomeSeq > state.lastSeq) {
      state.replaying = true;
      armReplayTimer();
    } else {
      finishReplay();
    }
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
    runDeferredHooks();
    if (canSend()) {
      flushOutbox();
      flushDecisions();
    }
  }

  function onMessage(frame) {
    if (frame.role && frame.role !== "user") {
      // A complete non-user message in one frame.
      if (!state.messages.has(frame.message_id)) {
        renderHistoryMessage(frame.role, frame.text || "", frame.message_id);
      }
      emit("message", frame);
      return;
    }
    const item = frame.client_id ? state.outbox.find((o) => o.clientId === frame.client_id) : null;
    if (item) {
      state.outbox = state.outbox.filter((other) => other !== item);
      markDelivered(item, frame);
    } else if (!frame.message_id || !state.messages.has(frame.message_id)) {
      renderHistoryMessage("user", frame.text || "", frame.message_id);
    }
    emit("message", frame);
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
    botMessage(frame.message_id, frame.role);
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
      message.textEl.textContent = message.text;
      setTyping(message, false);
    });
    if (!state.panelOpen && isLive(frame)) setUnread(true);
    emit("message", { message_id: frame.message_id, role: message.role, text: message.text });
  }

  const CARD_FIELDS = [
    "card_id", "status", "kind", "approver", "title", "text", "actions", "args_hash",
    "expires_at", "level", "role", "levels", "decided_by", "reason", "results",
  ];
  const UPDATE_FIELDS = ["status", "decided_by", "level", "role", "reason", "results"];

  function copyFields(target, frame, fields) {
    for (const field of fields) if (field in frame) target[field] = clone(frame[field]);
  }

  function onCard(frame) {
    if (!frame.card_id) return;
    const entry = cardEntry(frame.card_id);
    copyFields(entry.card, frame, CARD_FIELDS);
    entry.known = true;
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
  }

  function onCardUpdate(frame) {
    if (!frame.card_id) return;
    const entry = cardEntry(frame.card_id);
    copyFields(entry.card, frame, UPDATE_FIELDS);
    // decide() resolves with the update that carries the outcome (done, failed,
    // cancelled, waiting for a teammate, ...), not with the intermediate approved/running.
    if (!IN_PROGRESS.has(entry.card.status)) settleDecision(entry, "resolve", frame);
    emit("card.update", frame);
    if (entry.el) keepScrolled(() => updateCardView(entry));
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
      clearToken();
      resetConversation();
      sendHello();
      return;
    }
    const entry = frame.ref ? state.cards.get(frame.ref) : null;
    if (entry) {
      onDecisionError(entry, frame);
      return;
    }
    const item = frame.ref ? state.outbox.find((o) => o.clientId === frame.ref) : null;
    if (item) markFailed(item);
    showNotice(errorText(frame));
  }

  function onDecisionError(entry, frame) {
    settleDecision(entry, "reject", frame);
    if (!RETRYABLE_DECISION_ERRORS.has(frame.code)) entry.locked = true;
    entry.error = errorText(frame);
    if (entry.el) updateCardView(entry);
  }

  function onSessionEnd(frame) {
    state.ended = true;
    clearTimeout(state.reconnectTimer);
    setStatus(null);
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
    for (const entry of state.cards.values()) {
      settleDecision(entry, "reject", { type: "error", code: "expired", message: "The conversation was reset", ref: entry.id });
    }
    state.cards.clear();
    state.messages.clear();
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
    clearToken();
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
      // The server refused this page's origin: retrying cannot help.
      state.refused = true;
      setStatus("originRefused", "error");
      if (state.ui) setComposerEnabled(false);
      return;
    }
    if (state.ended) {
      setStatus(null);
      return;
    }
    setStatus("reconnecting");
    scheduleReconnect();
  }

  // 0.5 s doubling up to 10 s, plus jitter so many widgets don't reconnect in lockstep.
  function scheduleReconnect() {
    clearTimeout(state.reconnectTimer);
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, state.attempts));
    const delay = Math.min(BACKOFF_MAX_MS, base * (1 + Math.random() * 0.3));
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

  function onBrowserOnline() {
    // Back online: try at once rather than waiting out the backoff.
    if (state.started && !state.ws && state.reconnectTimer) connect();
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
    if (state.options.open) setOpen(true); // focuses the input once the styles are in
    window.addEventListener("online", onBrowserOnline);
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

  // --- Public API -----------------------------------------------------------------------

  const api = {
    __signoff: true,
    version: VERSION,
    init(options) {
      mergeOptions(options);
      if (state.started) applyOptions(isObject(options) ? options : {});
      else maybeStart();
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
  };

  mergeOptions(readDataAttributes(SCRIPT));
  mergeOptions(window.signoffSettings);
  window.Signoff = Object.freeze(api);
  window.dispatchEvent(new CustomEvent("signoff:ready"));
  maybeStart();
})();

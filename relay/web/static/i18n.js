// The app's strings: one JSON catalogue per language (/static/i18n/<lang>.json), the same
// files the relay's emails are written from. The language is the one chosen with the switch
// (remembered in localStorage), else the browser's, else English. Elements name their
// string with data-i18n (text) or data-i18n-label (aria-label).
"use strict";

window.I18n = (function () {
  const LANGS = ["en", "cy"];
  const KEY = "relay.lang";
  let table = {};
  let fallback = {};
  let lang = "en";

  function chosen() {
    const saved = localStorage.getItem(KEY);
    if (LANGS.includes(saved)) return saved;
    const browser = (navigator.languages || [navigator.language || "en"])
      .map((l) => String(l).slice(0, 2).toLowerCase());
    return browser.find((l) => LANGS.includes(l)) || "en";
  }

  async function fetchTable(l) {
    const res = await fetch(`/static/i18n/${l}.json`);
    return res.ok ? res.json() : {};
  }

  function t(key, params) {
    let s = table[key] || fallback[key] || key;
    for (const [k, v] of Object.entries(params || {})) s = s.split(`{${k}}`).join(String(v));
    return s;
  }

  function apply(root) {
    document.documentElement.lang = lang;
    for (const el of (root || document).querySelectorAll("[data-i18n]")) {
      el.textContent = t(el.dataset.i18n);
    }
    for (const el of (root || document).querySelectorAll("[data-i18n-label]")) {
      el.setAttribute("aria-label", t(el.dataset.i18nLabel));
    }
  }

  async function use(l, remember) {
    lang = LANGS.includes(l) ? l : "en";
    if (remember) localStorage.setItem(KEY, lang);
    fallback = Object.keys(fallback).length ? fallback : await fetchTable("en");
    table = lang === "en" ? fallback : await fetchTable(lang);
    apply();
    return lang;
  }

  return { use, t, apply, chosen, get lang() { return lang; } };
})();

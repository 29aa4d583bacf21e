/* Browser-side parts of the OpsWatch dashboards (Dash clientside callbacks).
 *
 * They run without the server, which is the point: the clock keeps ticking, panel freshness keeps
 * ageing and the page says DISCONNECTED while OpsWatch or the network is gone; Dash's intervals keep
 * polling, and the page recovers by itself when answers come back.
 * Server times are corrected by the offset seen on the last heartbeat, so a wall display whose own
 * clock is wrong still shows true ages.
 */
(function () {
  function ageText(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 120) return s + "s";
    if (s < 7200) return Math.floor(s / 60) + "m";
    if (s < 172800) return Math.floor(s / 3600) + "h";
    return Math.floor(s / 86400) + "d";
  }

  function serverNow(beat) {
    return Date.now() + (beat && typeof beat.offset === "number" ? beat.offset : 0);
  }

  function lost(beat, config) {
    var lostMs = (config && config.lost_ms) || 10000;
    var since = beat ? beat.at : window.__opswatchLoadedAt;
    return Date.now() - since > lostMs;
  }

  window.__opswatchLoadedAt = window.__opswatchLoadedAt || Date.now();

  /* Dash's renderer records every change of a callback input made in the browser (each dcc.Interval
   * tick included) in its store's undo history, `history.past`, and never trims it: on a wall screen
   * that is 2 entries a second, about 0.7 MB of JS heap an hour. Without the undo/redo toolbar only the
   * newest entry is ever read (to revert an input after a component error; plotly/dash#727), so keep
   * the last HISTORY_KEEP. The store is created after this file runs, hence the polling. */
  var HISTORY_KEEP = 4;
  function boundUndoHistory(attempt) {
    var store = (window.dash_stores && window.dash_stores[0]) || window.store;
    if (!store) {
      if (attempt < 200) setTimeout(boundUndoHistory, 50, attempt + 1);
      else console.warn("OpsWatch: no Dash store found after 10 s; its undo history will grow unbounded");
      return;
    }
    store.subscribe(function () {
      var past = store.getState().history.past;
      // In place: the renderer copies `past` on its next record, and nothing else holds this array.
      if (past.length > HISTORY_KEEP) past.splice(0, past.length - HISTORY_KEEP);
    });
  }
  boundUndoHistory(0);

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    opswatch: {
      /* Server heartbeat {now_ms} -> {offset, at}: the server-minus-browser clock offset and when it came. */
      heartbeat: function (data) {
        if (!data) return window.dash_clientside.no_update;
        return {offset: data.now_ms - Date.now(), at: Date.now()};
      },

      /* The wall clock (UTC, server time), every second. */
      clock: function (n, beat) {
        return new Date(serverNow(beat)).toISOString().substring(11, 19) + " UTC";
      },

      /* [banner text, banner class]: DISCONNECTED when no heartbeat came for config.lost_ms. */
      connection: function (n, beat, config) {
        window.__opswatchConfig = config;
        if (lost(beat, config)) {
          var since = beat ? " for " + ageText(Date.now() - beat.at) : "";
          return ["DISCONNECTED: no answer from OpsWatch" + since + " · retrying · the data shown is stale",
                  "connection lost"];
        }
        return ["", "connection ok"];
      },

      /* Freshness badges: `fresh` is {panels: [newest ms or null, ...], stale_ms}; returns the badge texts
       * then their classes, in the page's panel order. The last panel is the page's overall data age. */
      freshness: function (n, fresh, beat) {
        var panels = (fresh && fresh.panels) || [];
        var total = window.dash_clientside.callback_context.outputs_list.length / 2;
        var texts = [], classes = [];
        var disconnected = lost(beat, window.__opswatchConfig);
        for (var i = 0; i < total; i++) {
          var ts = panels[i];
          var last = i === total - 1;
          if (ts === null || ts === undefined) {
            texts.push(fresh ? "no data" : "waiting for data");
            classes.push("fresh stale");
            continue;
          }
          var age = serverNow(beat) - ts;
          var stale = disconnected || age > fresh.stale_ms;
          var text = ageText(age) + (last ? " old" : "");
          if (last) text = "data " + text;
          if (stale) text = "STALE · " + text;
          texts.push(text);
          classes.push(stale ? "fresh stale" : "fresh");
        }
        return texts.concat(classes);
      },

      /* Keep the whole dependency graph in view: refit when its box changed size or its nodes changed. */
      fitGraph: function (n, elements) {
        var box = document.getElementById("topology");
        var cy = box && box._cyreg && box._cyreg.cy;
        if (cy) {
          var key = box.clientWidth + "x" + box.clientHeight + ":" + cy.nodes().length;
          if (box.__opswatchFit !== key) {
            box.__opswatchFit = key;
            cy.resize();
            cy.fit(undefined, 12);
          }
        }
        return window.dash_clientside.no_update;
      },

      /* Playlist rotation: the index of the screen to show now, or no_update when it has not changed. */
      playlist: function (n, playlist, current, beat) {
        if (!playlist) return window.dash_clientside.no_update;
        var index = Math.floor(serverNow(beat) / playlist.interval_ms) % playlist.screens;
        return index === current ? window.dash_clientside.no_update : index;
      }
    }
  });
})();

// Search on a site opened from disk (file://). The theme's search runs in a Web Worker, and a browser
// refuses to start a worker from a file:// script. On file:// pages this replaces Worker by a stand-in
// that runs the worker's script in a hidden same-origin iframe and passes messages as events, which is all
// the search worker needs (postMessage both ways, addEventListener("message"), importScripts).
// mkdocs.yml lists this file in extra.polyfills; its name tells the offline plugin that a worker shim is
// there, so the plugin adds none of its own (it would fetch one from the network).
(function () {
  "use strict";
  if (location.protocol !== "file:") {
    return;
  }

  function loadScripts(frameDocument, urls) {
    return urls.reduce(function (previous, url) {
      return previous.then(function () {
        return new Promise(function (resolve, reject) {
          var script = frameDocument.createElement("script");
          script.src = new URL(url, location.href).href;
          script.onload = resolve;
          script.onerror = function () { reject(new Error("cannot load " + url)); };
          frameDocument.head.appendChild(script);
        });
      });
    }, Promise.resolve());
  }

  function FileWorker(url) {
    var target = new EventTarget();
    var frame = document.createElement("iframe");
    var pending = [];
    var started = false;
    frame.hidden = true;
    document.body.appendChild(frame);
    var scope = frame.contentWindow;

    // what the worker's script calls: its messages become "message" events of this object
    scope.postMessage = function (data) {
      setTimeout(function () {
        var event = new MessageEvent("message", { data: data });
        target.dispatchEvent(event);
        if (typeof target.onmessage === "function") {
          target.onmessage(event);
        }
      }, 0);
    };
    scope.importScripts = function () {
      return loadScripts(frame.contentDocument, Array.prototype.slice.call(arguments));
    };
    scope.self = scope;

    function deliver(data) {
      setTimeout(function () {
        scope.dispatchEvent(new MessageEvent("message", { data: data }));
      }, 0);
    }

    target.postMessage = function (data) {
      if (started) {
        deliver(data);
      } else {
        pending.push(data);
      }
    };
    target.terminate = function () {
      frame.remove();
    };
    loadScripts(frame.contentDocument, [url]).then(function () {
      started = true;
      pending.splice(0).forEach(deliver);
    }, function (error) {
      target.dispatchEvent(new ErrorEvent("error", { message: String(error) }));
    });
    return target;
  }

  window.Worker = FileWorker;
})();

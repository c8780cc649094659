// Rule form, progressive enhancement only (everything works without it):
// - an expression error puts the cursor at its line and column in the textarea;
// - Ctrl+Enter (Cmd+Enter) in the expression runs the preview.
(function () {
  "use strict";
  function offsetOf(text, line, column) {
    var lines = text.split("\n"), offset = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
    return Math.min(offset + column - 1, text.length);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var area = document.getElementById("id_expression");
    if (!area || area.disabled) return;
    var error = document.getElementById("id_expression_error");
    if (error && error.dataset.line) {
      var at = offsetOf(area.value, +error.dataset.line, +error.dataset.column);
      area.focus();
      area.setSelectionRange(at, at);
    }
    var preview = document.querySelector("button[name=preview]");
    area.addEventListener("keydown", function (event) {
      if (preview && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        preview.click();
      }
    });
  });
})();

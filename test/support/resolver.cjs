// Sources import siblings as `./x.ts` and the compiler rewrites that to
// `./x.js`; ts-jest does the same, so a relative `.js` that does not exist is
// resolved to its `.ts` source. Everything else resolves as usual.
module.exports = (request, options) => {
  try {
    return options.defaultResolver(request, options);
  } catch (err) {
    if (request.startsWith('.') && request.endsWith('.js')) {
      return options.defaultResolver(`${request.slice(0, -3)}.ts`, options);
    }
    throw err;
  }
};

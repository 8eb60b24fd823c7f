package rls

// FromProto is fromProto, for the differential test's Check-path variant.
var FromProto = fromProto
